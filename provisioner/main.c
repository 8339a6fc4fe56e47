/*
 * ordinal-provisioner - entry point: parse options, set up logging, run the controller.
 */
#include <stdio.h>

#include "log.h"
#include "prov_config.h"

int main(int argc, char **argv)
{
    struct prov_config cfg;
    enum log_level level;
    enum log_format format;
    int r;

    r = prov_config_parse(&cfg, argc, argv);
    if (r != OPTS_OK) {
        prov_config_free(&cfg);
        return r == OPTS_EXIT ? 0 : 2;
    }
    log_level_from_string(cfg.log_level, &level);
    log_format_from_string(cfg.log_format, &format);
    log_setup("ordinal-provisioner", level, format);
    log_error("the controller is not built yet");
    prov_config_free(&cfg);
    return 1;
}
