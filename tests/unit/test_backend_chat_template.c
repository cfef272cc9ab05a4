/* Chat templates: fingerprints and renderings. The expected strings are
 * written from each family's published template (system message, two user
 * turns, one assistant turn, generation prompt). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "icalign/chat_template.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct backend_message g_conv[4] = {
    {BACKEND_SYSTEM, "You are a judge."},
    {BACKEND_USER, "Hello"},
    {BACKEND_ASSISTANT, "Hi there!"},
    {BACKEND_USER, "Rate this."},
};

static void check(const char *name, const char *bos, const char *eos, bool gen, const char *want) {
    const struct chat_template *t = chat_template_from_name(name);
    assert_non_null(t);
    char *out = NULL;
    struct ica_error e = {0};
    assert_int_equal(chat_template_render(t, g_conv, 4, gen, bos, eos, &out, &e), ICA_OK);
    assert_string_equal(out, want);
    if (chat_template_leading_bos(t) && bos && *bos)
        assert_memory_equal(out, bos, strlen(bos));
    free(out);
}

static void test_render_builtin(void **st) {
    (void)st;
    check("llama2", "<s>", "</s>", true,
          "<s>[INST] <<SYS>>\nYou are a judge.\n<</SYS>>\n\nHello [/INST] Hi there! </s>"
          "<s>[INST] Rate this. [/INST]");
    check("llama3", "<|begin_of_text|>", "<|end_of_text|>", true,
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a judge."
          "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nRate this.<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    check("llama3", "<|begin_of_text|>", "<|end_of_text|>", false,
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a judge."
          "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nRate this.<|eot_id|>");
    check("chatml", NULL, "<|endoftext|>", true,
          "<|im_start|>system\nYou are a judge.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
          "<|im_start|>assistant\nHi there!<|im_end|>\n<|im_start|>user\nRate this.<|im_end|>\n"
          "<|im_start|>assistant\n");
    check("qwen2", NULL, NULL, false,
          "<|im_start|>system\nYou are a judge.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
          "<|im_start|>assistant\nHi there!<|im_end|>\n<|im_start|>user\nRate this.<|im_end|>\n");
    check("mistral-v1", "<s>", "</s>", true,
          "<s> [INST] You are a judge.\n\nHello [/INST] Hi there!</s> [INST] Rate this. [/INST]");
    check("mistral-v3", "<s>", "</s>", true,
          "<s>[INST] Hello[/INST] Hi there!</s>[INST] You are a judge.\n\nRate this.[/INST]");
    check("mistral-v3-tekken", "<s>", "</s>", true,
          "<s>[INST]Hello[/INST]Hi there!</s>[INST]You are a judge.\n\nRate this.[/INST]");
    check("mistral-v7", "<s>", "</s>", true,
          "<s>[SYSTEM_PROMPT] You are a judge.[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there!</s>"
          "[INST] Rate this.[/INST]");
    check("gemma", "<bos>", "<eos>", true,
          "<bos><start_of_turn>user\nYou are a judge.\n\nHello<end_of_turn>\n"
          "<start_of_turn>model\nHi there!<end_of_turn>\n<start_of_turn>user\nRate this."
          "<end_of_turn>\n<start_of_turn>model\n");
    check("phi3", "<s>", "<|endoftext|>", true,
          "<|system|>\nYou are a judge.<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\n"
          "Hi there!<|end|>\n<|user|>\nRate this.<|end|>\n<|assistant|>\n");
    check("phi3", "<s>", "<|endoftext|>", false,
          "<|system|>\nYou are a judge.<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\n"
          "Hi there!<|end|>\n<|user|>\nRate this.<|end|>\n<|endoftext|>");
    /* BOS left to the tokenizer: bos_text NULL */
    check("llama3", NULL, NULL, true,
          "<|start_header_id|>system<|end_header_id|>\n\nYou are a judge."
          "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nRate this.<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void test_render_edges(void **st) {
    (void)st;
    const struct chat_template *t = chat_template_from_name("llama2");
    char *out = NULL;
    struct ica_error e = {0};
    /* no system message; whitespace stripped as the template's .strip() */
    struct backend_message one[1] = {{BACKEND_USER, "  Why?\n"}};
    assert_int_equal(chat_template_render(t, one, 1, true, "<s>", "</s>", &out, &e), ICA_OK);
    assert_string_equal(out, "<s>[INST] Why? [/INST]");
    free(out);
    t = chat_template_from_name("gemma");
    assert_int_equal(chat_template_render(t, one, 1, true, "<bos>", NULL, &out, &e), ICA_OK);
    assert_string_equal(out, "<bos><start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n");
    free(out);
    t = chat_template_from_name("chatml");
    assert_int_equal(chat_template_render(t, one, 0, true, NULL, NULL, &out, &e), ICA_OK);
    assert_string_equal(out, "<|im_start|>assistant\n");
    free(out);
    /* a system message later in the conversation is refused */
    struct backend_message late[2] = {{BACKEND_USER, "a"}, {BACKEND_SYSTEM, "b"}};
    assert_int_equal(chat_template_render(t, late, 2, true, NULL, NULL, &out, &e), ICA_ERR_ARG);
    assert_null(out);
    assert_non_null(strstr(e.msg, "chatml"));
    assert_string_equal(chat_template_end_of_turn(chat_template_from_name("llama3"), "</s>"),
                        "<|eot_id|>");
    assert_string_equal(chat_template_end_of_turn(chat_template_from_name("llama2"), "</s>"),
                        "</s>");
    assert_null(chat_template_from_name("jinja"));
    assert_null(chat_template_from_name(NULL));
    assert_non_null(strstr(chat_template_names(), "mistral-v7"));
}

static const char *detected(const char *jinja) {
    const struct chat_template *t = chat_template_detect(jinja);
    return t ? chat_template_name(t) : "(none)";
}

static void test_detect(void **st) {
    (void)st;
    /* excerpts of the published templates carrying their fingerprints */
    assert_string_equal(
        detected("{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
                 "messages[0]['content'] | trim + '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message "
                 "in loop_messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
                 "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' "
                 "+ content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"),
        "llama2");
    assert_string_equal(
        detected("{% set loop_messages = messages %}{% for message in loop_messages %}{% set "
                 "content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
                 "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set "
                 "content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"),
        "llama3");
    assert_string_equal(
        detected("{% for message in messages %}{% if loop.first and messages[0]['role'] != "
                 "'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' "
                 "}}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n'}}{% endfor %}"),
        "chatml");
    assert_string_equal(detected("{{ bos_token }}{%- for message in loop_messages %}{%- if "
                                 "loop.first and system_message is defined %}{{- ' [INST] ' + "
                                 "system_message + '\\n\\n' + message['content'] + ' [/INST]' "
                                 "}}{%- endif %}{%- endfor %}"),
                        "mistral-v1");
    assert_string_equal(detected("{{- bos_token }}{%- if tools is not none %}{{- "
                                 "\"[AVAILABLE_TOOLS] [\" }}{%- endif %}{{- \"[INST] \" + "
                                 "message[\"content\"] + \"[/INST]\" }}"),
                        "mistral-v3");
    assert_string_equal(detected("{{- bos_token }}{{- \"[AVAILABLE_TOOLS][\" }}{{- \"[INST]\" + "
                                 "message[\"content\"] + \"[/INST]\" }}"),
                        "mistral-v3-tekken");
    assert_string_equal(detected("{{- bos_token }}{{- '[SYSTEM_PROMPT] ' + system_message + "
                                 "'[/SYSTEM_PROMPT]' }}{{- '[INST] ' + message['content'] + "
                                 "'[/INST]' }}"),
                        "mistral-v7");
    assert_string_equal(
        detected("{{ bos_token }}{% for message in messages %}{% if (message['role'] == "
                 "'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] "
                 "%}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
                 "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_"
                 "turn>model\\n'}}{% endif %}"),
        "gemma");
    assert_string_equal(
        detected("{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>"
                 "\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' "
                 "%}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor "
                 "%}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"),
        "phi3");
    assert_string_equal(detected("llama3"), "llama3");
    assert_string_equal(detected("{{ messages }}"), "(none)");
    assert_string_equal(detected("<|im_start|>{{ role }}<|im_sep|>"), "(none)"); /* Phi-4 */
    assert_string_equal(detected(""), "(none)");
    assert_null(chat_template_detect(NULL));
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_custom(void **st) {
    (void)st;
    char path[512];
    snprintf(path, sizeof path, "%s/phi3.tmpl", tu_tmpdir());
    write_file(path, "# Phi-3 as a custom file\n"
                     "begin      = \"\"\n"
                     "system     = \"<|system|>\\n{content}<|end|>\\n\"   # trailing comment\n"
                     "user       = \"<|user|>\\n{content}<|end|>\\n\"\n"
                     "assistant  = \"<|assistant|>\\n{content}<|end|>\\n\"\n"
                     "generation = \"<|assistant|>\\n\"\n"
                     "end        = \"{eos}\"\n"
                     "trim       = \"no\"\n");
    struct chat_template *t = NULL;
    struct ica_error e = {0};
    assert_int_equal(chat_template_load(path, &t, &e), ICA_OK);
    assert_false(chat_template_leading_bos(t));
    assert_non_null(strstr(chat_template_name(t), "custom:"));
    for (int gen = 0; gen < 2; gen++) {
        char *a = NULL, *b = NULL;
        assert_int_equal(chat_template_render(t, g_conv, 4, gen, "<s>", "<|endoftext|>", &a, &e),
                         ICA_OK);
        assert_int_equal(chat_template_render(chat_template_from_name("phi3"), g_conv, 4, gen,
                                              "<s>", "<|endoftext|>", &b, &e),
                         ICA_OK);
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
    chat_template_free(t);

    /* llama-3 as a custom file, with {bos} and trimming */
    write_file(path,
               "begin = \"{bos}\"\n"
               "system = \"<|start_header_id|>system<|end_header_id|>\\n\\n{content}<|eot_id|>\"\n"
               "user = \"<|start_header_id|>user<|end_header_id|>\\n\\n{content}<|eot_id|>\"\n"
               "assistant = \"<|start_header_id|>assistant<|end_header_id|>\\n\\n{content}"
               "<|eot_id|>\"\n"
               "generation = \"<|start_header_id|>assistant<|end_header_id|>\\n\\n\"\n"
               "trim = \"yes\"\n");
    assert_int_equal(chat_template_load(path, &t, &e), ICA_OK);
    assert_true(chat_template_leading_bos(t));
    struct backend_message m[4];
    memcpy(m, g_conv, sizeof m);
    m[1].content = " Hello \n";
    char *a = NULL, *b = NULL;
    assert_int_equal(chat_template_render(t, m, 4, true, "<|begin_of_text|>", NULL, &a, &e), 0);
    assert_int_equal(chat_template_render(chat_template_from_name("llama3"), m, 4, true,
                                          "<|begin_of_text|>", NULL, &b, &e),
                     0);
    assert_string_equal(a, b);
    free(a);
    free(b);
    chat_template_free(t);

    /* errors name the file and line */
    static const char *bad[] = {
        "user = \"{content}\"\n",                                 /* no assistant */
        "user = {content}\nassistant = \"{content}\"\n",          /* unquoted */
        "user = \"{content}\nassistant = \"{content}\"\n",        /* unterminated */
        "user = \"x\"\nassistant = \"{content}\"\n",              /* no {content} */
        "usr = \"{content}\"\nassistant = \"{content}\"\n",       /* unknown key */
        "user = \"{content}\" junk\nassistant = \"{content}\"\n", /* trailing text */
        "user = \"\\q{content}\"\nassistant = \"{content}\"\n",   /* bad escape */
        "trim = \"maybe\"\nuser = \"{content}\"\nassistant = \"{content}\"\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, bad[i]);
        t = NULL;
        assert_int_equal(chat_template_load(path, &t, &e), ICA_ERR_FORMAT);
        assert_null(t);
        assert_non_null(strstr(e.msg, path));
    }
    /* no system turn in the file: a system message is refused */
    write_file(path, "user = \"U:{content}\\n\"\nassistant = \"A:{content}\\n\"\n");
    assert_int_equal(chat_template_load(path, &t, &e), ICA_OK);
    assert_int_equal(chat_template_render(t, g_conv, 4, true, NULL, NULL, &a, &e), ICA_ERR_ARG);
    assert_int_equal(chat_template_render(t, g_conv + 1, 3, true, NULL, NULL, &a, &e), ICA_OK);
    assert_string_equal(a, "U:Hello\nA:Hi there!\nU:Rate this.\n");
    free(a);
    chat_template_free(t);
    assert_int_equal(chat_template_load("/nonexistent/t", &t, &e), ICA_ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/t"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_builtin),
        cmocka_unit_test(test_render_edges),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_custom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
