/* Local backend: results equal a fresh engine run whether or not the
 * previous request's prefix is reused; stop strings, logprobs, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "testutil.h"

#include "icalign/backend_local.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct backend *open_stories(void) {
    char path[1024];
    tu_require_shared(path, sizeof path, "fixtures/stories260K/stories260K.gguf");
    struct local_options o = local_default_options();
    o.model_path = path;
    struct backend *b = NULL;
    struct ica_error err = {0};
    if (local_backend_new(&o, &b, &err) != ICA_OK)
        fail_msg("%s", err.msg);
    return b;
}

static struct backend_request req(const char *prompt, uint32_t max_tokens) {
    struct backend_request r;
    memset(&r, 0, sizeof r);
    r.prompt = prompt;
    r.sampling = backend_default_sampling();
    r.max_tokens = max_tokens;
    return r;
}

static void test_prefix_reuse_is_exact(void **state) {
    (void)state;
    struct backend *warm = open_stories();
    static const char *prompts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "Once upon a time, there was a little boy named Tim.",
        "Once upon a time, there was a little girl named Lily. She loved",
        "One day, a big dog",
        "Once upon a time, there was a little girl named Lily.",
    };
    for (size_t i = 0; i < sizeof prompts / sizeof prompts[0]; i++) {
        struct backend_request r = req(prompts[i], 40);
        r.sampling.repetition_penalty = 1.15f;
        struct backend_result a, c;
        struct ica_error err = {0};
        assert_int_equal(backend_complete1(warm, &r, NULL, NULL, &a, &err), ICA_OK);
        struct backend *cold = open_stories();
        assert_int_equal(backend_complete1(cold, &r, NULL, NULL, &c, &err), ICA_OK);
        assert_string_equal(a.text, c.text);
        assert_int_equal(a.completion_tokens, c.completion_tokens);
        assert_int_equal(c.cached_tokens, 0);
        if (i == 1 || i == 2)
            assert_true(a.cached_tokens > 5); /* shares "Once upon a time, ..." */
        backend_result_free(&a);
        backend_result_free(&c);
        backend_free(cold);
    }
    backend_free(warm);
}

static void test_stop_and_logprobs(void **state) {
    (void)state;
    struct backend *b = open_stories();
    struct backend_request r = req("Once upon a time", 64);
    struct backend_result full, cut;
    struct ica_error err = {0};
    assert_int_equal(backend_complete1(b, &r, NULL, NULL, &full, &err), ICA_OK);
    const char *lily = strstr(full.text, "Lily");
    assert_non_null(lily);
    const char *stop[] = {"Lily"};
    r.stop = stop;
    r.n_stop = 1;
    r.top_logprobs = 5;
    assert_int_equal(backend_complete1(b, &r, NULL, NULL, &cut, &err), ICA_OK);
    assert_int_equal(cut.text_len, (size_t)(lily - full.text));
    assert_memory_equal(cut.text, full.text, cut.text_len);
    assert_int_equal(cut.finish, BACKEND_FINISH_STOP);
    assert_int_equal(cut.n_top, 5);
    double total = 0;
    for (size_t k = 0; k < cut.n_top; k++) {
        assert_true(cut.top[k].logprob <= 0);
        if (k)
            assert_true(cut.top[k].logprob <= cut.top[k - 1].logprob);
        total += exp(cut.top[k].logprob);
    }
    assert_true(total <= 1.0 + 1e-6);
    /* the greedy first token is the most likely one */
    assert_non_null(cut.top[0].token);
    assert_memory_equal(full.text, cut.top[0].token, strlen(cut.top[0].token));
    backend_result_free(&full);
    backend_result_free(&cut);
    backend_free(b);
}

static void test_errors(void **state) {
    (void)state;
    struct backend *b = open_stories();
    struct backend_request r = req("Once upon a time", 1000); /* context is 128 */
    struct backend_result res;
    struct ica_error err = {0};
    assert_int_equal(backend_complete1(b, &r, NULL, NULL, &res, &err), ICA_ERR_RANGE);
    assert_non_null(strstr(err.msg, "128"));
    struct ica_error e2 = {0};
    struct local_options o = local_default_options();
    o.model_path = "/nonexistent/model.gguf";
    struct backend *bad = NULL;
    assert_int_not_equal(local_backend_new(&o, &bad, &e2), ICA_OK);
    assert_null(bad);
    assert_non_null(strstr(e2.msg, "/nonexistent/model.gguf"));
    backend_free(b);
}

static void test_chat(void **state) {
    (void)state;
    struct backend *b = open_stories();
    struct backend_message msgs[] = {{BACKEND_SYSTEM, "You are a storyteller."},
                                     {BACKEND_USER, "Tell me about Lily."}};
    struct backend_request r;
    memset(&r, 0, sizeof r);
    r.messages = msgs;
    r.n_messages = 2;
    r.sampling = backend_default_sampling();
    r.max_tokens = 8;
    struct backend_result res;
    struct ica_error err = {0};
    /* stories260K has no chat template: a clear error naming the way out */
    assert_int_equal(backend_complete1(b, &r, NULL, NULL, &res, &err), ICA_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "--chat-template"));
    backend_free(b);

    char path[1024];
    tu_require_shared(path, sizeof path, "fixtures/stories260K/stories260K.gguf");
    struct local_options o = local_default_options();
    o.model_path = path;
    o.chat_template = "chatml";
    assert_int_equal(local_backend_new(&o, &b, &err), ICA_OK);
    assert_int_equal(backend_complete1(b, &r, NULL, NULL, &res, &err), ICA_OK);
    /* the rendered conversation is longer than the two messages alone */
    assert_true(res.prompt_tokens > 20);
    assert_true(res.completion_tokens <= 8);
    const int64_t plain = backend_count_tokens(b, "You are a storyteller. Tell me about Lily.");
    assert_true(plain > 0 && res.prompt_tokens > (uint32_t)plain);
    backend_result_free(&res);
    backend_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_reuse_is_exact),
        cmocka_unit_test(test_stop_and_logprobs),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_chat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
