/* fuzz_config — libFuzzer target for the model config parser: any text is
 * refused with one line or accepted as a config that passes the check, and
 * an accepted config rendered as JSON parses back to the same struct. */
#include "../../models/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), err[512] = "";
    memcpy(text, data, size);
    text[size] = 0;
    model_config_t c, d;
    // base "/nonexistent": llm_config / vit_config files are never found
    if (model_config_parse(&c, text, "/nonexistent", err, sizeof err) != 0) {
        if (!err[0] || memchr(err, '\n', strnlen(err, sizeof err)))
            abort();
    } else {
        if (model_config_check(&c, err, sizeof err) != 0)
            abort();
        size_t n = model_config_json(&c, NULL, 0);
        char *js = malloc(n + 1);
        model_config_json(&c, js, n + 1);
        if (model_config_parse(&d, js, NULL, err, sizeof err) != 0 || memcmp(&c, &d, sizeof c) != 0)
            abort();
        char line[512];
        model_config_summary(&c, line, sizeof line);
        free(js);
    }
    free(text);
    return 0;
}
