/* icalign — git-style command dispatcher. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ICALIGN_VERSION
#define ICALIGN_VERSION "0.1.0"
#endif

static const struct cli_cmd g_cmds[] = {
    {"info", "show a GGUF model's architecture, dimensions and tensor types", cmd_info},
    {"logits", "evaluate tokens and write every position's logits (float32)", cmd_logits},
    {"generate", "complete a prompt with a base model", cmd_generate},
    {"tokenize", "text to token ids with the model's tokenizer, as llama.cpp", cmd_tokenize},
    {"detokenize", "token ids back to text", cmd_detokenize},
    {"prompt", "print the exact URIAL prompt for a query or conversation", cmd_prompt},
    {"demos", "show, compose and transform demonstration sets (ablations)", cmd_demos},
    {"answer", "answer MT-Bench, AlpacaEval or a JSONL file into a resumable run", cmd_answer},
    {"judge", "run an LLM judge over a run's answers (MT-Bench, AlpacaEval, just-eval)", cmd_judge},
    {"chat", "interactive multi-turn chat with a base model through URIAL", cmd_chat},
    {"pull", "download a base model GGUF (resume, sha256 check)", cmd_pull},
    {"score", "MT-Bench averages and AlpacaEval (LC) win rates from judge outputs", cmd_score},
    {"synth", "write a random-weight model of a real shape (speed work)", cmd_synth},
    {"bench", "prompt/generation speed (like llama-bench); --workload urial: the URIAL workload",
     cmd_bench},
    {"complete", "one completion or chat request to a server or a local model", cmd_complete},
    {"serve", "OpenAI-compatible server: a base model as a chat model (URIAL)", cmd_serve},
    {"search", "greedy search for extra demonstrations (cached, resumable)", cmd_search},
    {"sweep", "score vs number of demonstrations (random, greedy-rank, diversity, ...)", cmd_sweep},
    {"ablate", "QA-matching ablations of a demonstration set as one table", cmd_ablate},
};

static void usage(FILE *fp) {
    fprintf(fp, "usage: icalign <command> [options]\n\n"
                "In-context alignment of base LLMs: URIAL prompts, many-shot ICL,\n"
                "evaluation, and a CPU inference engine for GGUF models.\n\n"
                "commands:\n");
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        fprintf(fp, "  %-12s %s\n", g_cmds[i].name, g_cmds[i].summary);
    fprintf(fp, "\nRun 'icalign <command> --help' for a command's options.\n");
}

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("icalign: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "--help") || !strcmp(c, "-h") || !strcmp(c, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(c, "--version")) {
        printf("icalign %s\n", ICALIGN_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        if (!strcmp(c, g_cmds[i].name))
            return g_cmds[i].run(argc - 1, argv + 1);
    cli_error("unknown command '%s' (see 'icalign --help')", c);
    return 2;
}
