/*
 * hf.c — Hugging Face model folders (config.json, safetensors, tokenizer.json)
 * as external-weight transformers. (Work in progress.)
 */
#include "models/loaders.h"

duet_status hf_open(const char *dir, const duet_model_params *p, duet_model *out) {
    (void)p;
    (void)out;
    return duet_set_error(DUET_ERR_UNSUPPORTED, "%s: Hugging Face folders are not supported yet",
                          dir);
}

duet_tokenizer *duet_tokenizer_load_hf(const char *path, char **chat_template) {
    if (chat_template) *chat_template = NULL;
    duet_set_error(DUET_ERR_UNSUPPORTED, "%s: not supported yet", path);
    return NULL;
}
