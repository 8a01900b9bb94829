/*
 * cmd_version.c — `duet version`: what was built, and what this CPU can run.
 */
#include "cli/cli.h"

#include <stdio.h>

int cmd_version(int argc, char **argv) {
    cli_opt opts[1];
    const char *pos[1];
    int npos;
    int rc = cli_parse("version", "", argc, argv, opts, 0, pos, 0, &npos);
    if (rc) return rc < 0 ? 0 : rc;
    char feats[256];
    duet_cpu_features_string(feats, sizeof feats);
    printf("duet %s\n", DUET_VERSION);
    printf("compiler: %s\n", duet_compiler());
    printf("cpu features: %s\n", feats[0] ? feats : "(none detected)");
    printf("kernels: %s\n", duet_kernel_isa());
    printf("threads: %d\n", duet_get_threads());
    return 0;
}
