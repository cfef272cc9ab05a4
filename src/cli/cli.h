/* Shared helpers of the icalign command-line tool. cli/ is the only module
 * that prints for humans and the only one that exits. */
#ifndef ICALIGN_CLI_H
#define ICALIGN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cli_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
};

/* Each command lives in its own cmd_<name>.c. */
int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_prompt(int argc, char **argv);
int cmd_demos(int argc, char **argv);

/* Prints "icalign: <msg>\n" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a comma/space separated list of integers; returns a malloc'd array
 * and its length in *n, or NULL with a message printed on a bad list. */
int32_t *cli_parse_ids(const char *s, size_t *n);

/* Strict numeric option parsing: the whole string must be a number in range.
 * Print an error naming opt and return false otherwise. */
bool cli_parse_int(const char *opt, const char *s, long min, long max, long *out);
bool cli_parse_float(const char *opt, const char *s, double min, double max, double *out);

#endif
