#include "cli.h"
int cmd_pull(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return 2;
}
