/* formats.c — see formats.h. Images are named images/<format>-<line>-<k>.<ext>,
 * k counting the line's images from 0. */
#include "formats.h"

#include "draw.h"
#include "scene.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define TEXT_LEN 512

/* One line in the making: its generators and the images it has written. */
typedef struct {
    synth_ctx_t *c;
    const char *prefix;
    uint64_t index;
    int nimages;
    synth_rng_t r;   // scenes and texts
    synth_rng_t ext; // PNG or JPEG, apart so --jpeg-fraction changes nothing else
} line_t;

static line_t line_start(synth_ctx_t *c, int id, uint64_t index)
{
    line_t l = {c,
                synth_formats[id].name,
                index,
                0,
                synth_rng_for(c->seed, (uint64_t)id, index),
                synth_rng_for(c->seed, 1000 + (uint64_t)id, index)};
    return l;
}

/* Render and save the scene; path gets its name relative to the output. */
static int image(line_t *l, const synth_scene_t *s, char *path, char *err)
{
    int jpeg = synth_rng_below(&l->ext, 1000) < l->c->jpeg_permille;
    snprintf(path, TEXT_LEN, "images/%s-%06" PRIu64 "-%d.%s", l->prefix, l->index, l->nimages++, jpeg ? "jpg" : "png");
    synth_draw(s, l->c->px, l->c->rgb);
    return synth_out_image(l->c->out, path, l->c->rgb, l->c->px, jpeg, err);
}

/* json_pack fails only for want of memory (every text is ASCII). */
static int packed(json_t *j, json_t **line, char *err)
{
    if (!j) {
        snprintf(err, SYNTH_ERR_LEN, "out of memory");
        return -1;
    }
    *line = j;
    return 0;
}

static int append(json_t *arr, json_t *item, char *err)
{
    if (!item || json_array_append_new(arr, item)) {
        snprintf(err, SYNTH_ERR_LEN, "out of memory");
        return -1;
    }
    return 0;
}

static void sentence(const synth_scene_t *s, char *out)
{
    char cap[TEXT_LEN];
    synth_caption(s, cap, sizeof cap);
    synth_capitalize(cap, out, TEXT_LEN - 1);
    strcat(out, ".");
}

static int make_t2i(synth_ctx_t *c, int id, uint64_t index, json_t **line, char *err)
{
    line_t l = line_start(c, id, index);
    synth_scene_t s = synth_scene_random(&l.r);
    char cap[TEXT_LEN], path[TEXT_LEN];
    synth_caption(&s, cap, sizeof cap);
    if (image(&l, &s, path, err))
        return -1;
    return packed(json_pack("{s:s,s:s}", "prompt", cap, "image_path", path), line, err);
}

static int make_i2t(synth_ctx_t *c, int id, uint64_t index, json_t **line, char *err)
{
    static const char *const prompts[] = {"Describe the image.", "What is in this picture?",
                                          "Write a short caption for this image."};
    line_t l = line_start(c, id, index);
    synth_scene_t s = synth_scene_random(&l.r);
    char cap[TEXT_LEN], path[TEXT_LEN];
    synth_caption(&s, cap, sizeof cap);
    if (image(&l, &s, path, err))
        return -1;
    // the prompt is optional in this format: half the lines have one
    if (synth_rng_chance(&l.r, 1, 2)) {
        const char *p = prompts[synth_rng_below(&l.r, 3)];
        return packed(json_pack("{s:s,s:s,s:s}", "image_path", path, "prompt", p, "caption", cap), line, err);
    }
    return packed(json_pack("{s:s,s:s}", "image_path", path, "caption", cap), line, err);
}

static int make_edit(synth_ctx_t *c, int id, uint64_t index, json_t **line, char *err)
{
    line_t l = line_start(c, id, index);
    synth_scene_t s = synth_scene_random(&l.r);
    char path[TEXT_LEN], instr[TEXT_LEN];
    if (image(&l, &s, path, err))
        return -1;
    json_t *steps = json_array();
    if (packed(json_pack("{s:s,s:o}", "input_image", path, "editing_steps", steps), line, err))
        return -1;
    int n = synth_rng_range(&l.r, 1, 3);
    for (int k = 0; k < n; k++) {
        s = synth_scene_edit(&s, synth_rng_below(&l.r, SYNTH_NEDITS), &l.r, instr, sizeof instr);
        if (image(&l, &s, path, err) ||
            append(steps, json_pack("{s:s,s:s}", "instruction", instr, "result_image", path), err))
            return -1;
    }
    return 0;
}

static int make_vqa(synth_ctx_t *c, int id, uint64_t index, json_t **line, char *err)
{
    line_t l = line_start(c, id, index);
    synth_scene_t s = synth_scene_random(&l.r);
    char path[TEXT_LEN], q[TEXT_LEN], a[TEXT_LEN], first[TEXT_LEN + 16];
    if (image(&l, &s, path, err))
        return -1;
    json_t *conv = json_array();
    if (packed(json_pack("{s:s,s:o}", "image", path, "conversations", conv), line, err))
        return -1;
    int kinds[SYNTH_NQUESTIONS];
    for (int k = 0; k < SYNTH_NQUESTIONS; k++)
        kinds[k] = k;
    for (int k = SYNTH_NQUESTIONS - 1; k > 0; k--) {
        int j = synth_rng_below(&l.r, k + 1), t = kinds[k];
        kinds[k] = kinds[j], kinds[j] = t;
    }
    int n = synth_rng_range(&l.r, 2, 4);
    for (int k = 0; k < n; k++) {
        synth_question(&s, kinds[k], &l.r, q, sizeof q, a, sizeof a);
        snprintf(first, sizeof first, "%s%s", k == 0 ? "<image>\n" : "", q);
        if (append(conv, json_pack("{s:s,s:s}", "from", "human", "value", first), err) ||
            append(conv, json_pack("{s:s,s:s}", "from", "gpt", "value", a), err))
            return -1;
    }
    return 0;
}

static json_t *msg_text(const char *role, const char *text)
{
    return json_pack("{s:s,s:s,s:s}", "role", role, "type", "text", "content", text);
}

static json_t *msg_image(const char *role, const char *path)
{
    return json_pack("{s:s,s:s,s:s}", "role", role, "type", "image", "image_path", path);
}

static int make_conversations(synth_ctx_t *c, int id, uint64_t index, json_t **line, char *err)
{
    static const char *const asks[] = {"Draw %s.", "Please draw %s.", "Can you draw %s?"};
    enum { DRAW, DESCRIBE, DRAW_EDIT };
    line_t l = line_start(c, id, index);
    synth_scene_t s = synth_scene_random(&l.r);
    int kind = synth_rng_below(&l.r, 3);
    char cap[TEXT_LEN], text[TEXT_LEN * 2], path[TEXT_LEN];
    synth_caption(&s, cap, sizeof cap);
    json_t *conv = json_array();
    if (packed(json_pack("{s:o}", "conversations", conv), line, err))
        return -1;
    if (synth_rng_chance(&l.r, 1, 3) &&
        append(conv, msg_text("system", "You draw and describe simple coloured shapes."), err))
        return -1;
    if (kind == DESCRIBE) {
        sentence(&s, text);
        return image(&l, &s, path, err) || append(conv, msg_image("user", path), err) ||
                       append(conv, msg_text("user", "What is in this image?"), err) ||
                       append(conv, msg_text("assistant", text), err)
                   ? -1
                   : 0;
    }
    snprintf(text, sizeof text, asks[synth_rng_below(&l.r, 3)], cap);
    if (append(conv, msg_text("user", text), err) || image(&l, &s, path, err) ||
        append(conv, msg_image("assistant", path), err))
        return -1;
    if (kind == DRAW_EDIT) {
        s = synth_scene_edit(&s, synth_rng_below(&l.r, SYNTH_NEDITS), &l.r, text, sizeof text);
        if (append(conv, msg_text("user", text), err) || image(&l, &s, path, err) ||
            append(conv, msg_image("assistant", path), err))
            return -1;
    }
    return 0;
}

static json_t *seq_text(const char *text, int loss)
{
    return json_pack("{s:s,s:s,s:b}", "type", "text", "content", text, "loss", loss);
}

static json_t *seq_image(const char *path, int und, int gen, int loss)
{
    return json_pack("{s:s,s:s,s:b,s:b,s:b}", "type", "image", "image_path", path, "und", und, "gen", gen, "loss",
                     loss);
}

static int make_sequence(synth_ctx_t *c, int id, uint64_t index, json_t **line, char *err)
{
    enum { GENERATE, UNDERSTAND, EDIT };
    line_t l = line_start(c, id, index);
    synth_scene_t s = synth_scene_random(&l.r);
    int kind = synth_rng_below(&l.r, 3);
    char cap[TEXT_LEN], instr[TEXT_LEN], path[TEXT_LEN];
    synth_caption(&s, cap, sizeof cap);
    json_t *seq = json_array();
    if (packed(json_pack("{s:o}", "sequence", seq), line, err))
        return -1;
    switch (kind) {
    case GENERATE: // caption -> image to generate
        return append(seq, seq_text(cap, 0), err) || image(&l, &s, path, err) ||
                       append(seq, seq_image(path, 0, 1, 1), err)
                   ? -1
                   : 0;
    case UNDERSTAND: // image seen -> caption to predict
        return image(&l, &s, path, err) || append(seq, seq_image(path, 1, 0, 0), err) ||
                       append(seq, seq_text(cap, 1), err)
                   ? -1
                   : 0;
    default: // image seen and as clean latents, instruction -> edited image
        if (image(&l, &s, path, err) || append(seq, seq_image(path, 1, 1, 0), err))
            return -1;
        s = synth_scene_edit(&s, synth_rng_below(&l.r, SYNTH_NEDITS), &l.r, instr, sizeof instr);
        return append(seq, seq_text(instr, 0), err) || image(&l, &s, path, err) ||
                       append(seq, seq_image(path, 0, 1, 1), err)
                   ? -1
                   : 0;
    }
}

static json_t *il_text(const char *text) { return json_pack("{s:s,s:s}", "type", "text", "content", text); }
static json_t *il_image(const char *path) { return json_pack("{s:s,s:s}", "type", "image", "image_path", path); }

/* "How to draw" the scene: the empty canvas, a medium shape in the center,
 * then one step for the size and one for the position where they differ,
 * in a random order; an image after every step. */
static int make_interleaved(synth_ctx_t *c, int id, uint64_t index, json_t **line, char *err)
{
    line_t l = line_start(c, id, index);
    synth_scene_t goal = synth_scene_random(&l.r);
    char cap[TEXT_LEN], text[TEXT_LEN * 2], instr[TEXT_LEN], path[TEXT_LEN];
    synth_caption(&goal, cap, sizeof cap);
    json_t *il = json_array();
    if (packed(json_pack("{s:o}", "interleaved", il), line, err))
        return -1;
    snprintf(text, sizeof text, "How to draw %s.", cap);
    if (append(il, il_text(text), err))
        return -1;
    synth_scene_t cur = goal;
    cur.shape = SYNTH_NONE;
    int step = 1;
    snprintf(text, sizeof text, "Step %d. Fill the canvas with %s.", step++, synth_colours[goal.bg].name);
    if (append(il, il_text(text), err) || image(&l, &cur, path, err) || append(il, il_image(path), err))
        return -1;
    cur.shape = goal.shape, cur.size = SYNTH_MEDIUM, cur.pos = SYNTH_POS_CENTER;
    snprintf(text, sizeof text, "Step %d. Draw a medium %s %s in the center.", step++, synth_colours[goal.colour].name,
             synth_shape_name(goal.shape));
    if (append(il, il_text(text), err) || image(&l, &cur, path, err) || append(il, il_image(path), err))
        return -1;
    int order[2] = {SYNTH_EDIT_SIZE, SYNTH_EDIT_POSITION};
    if (synth_rng_chance(&l.r, 1, 2))
        order[0] = SYNTH_EDIT_POSITION, order[1] = SYNTH_EDIT_SIZE;
    for (int k = 0; k < 2; k++) {
        synth_scene_t next = cur;
        if (order[k] == SYNTH_EDIT_SIZE)
            next.size = goal.size;
        else
            next.pos = goal.pos;
        if (next.size == cur.size && next.pos == cur.pos)
            continue;
        synth_instruction(&cur, &next, order[k], instr, sizeof instr);
        snprintf(text, sizeof text, "Step %d. %s", step++, instr);
        cur = next;
        if (append(il, il_text(text), err) || image(&l, &cur, path, err) || append(il, il_image(path), err))
            return -1;
    }
    return 0;
}

const synth_format_t synth_formats[] = {
    {"t2i", "t2i.jsonl", make_t2i},
    {"i2t", "i2t.jsonl", make_i2t},
    {"edit", "edit.jsonl", make_edit},
    {"vqa", "vqa.jsonl", make_vqa},
    {"conversations", "conversations.jsonl", make_conversations},
    {"sequence", "sequence.jsonl", make_sequence},
    {"interleaved", "interleaved.jsonl", make_interleaved},
};
const int synth_nformats = (int)(sizeof synth_formats / sizeof synth_formats[0]);

int synth_format_find(const char *name, int len)
{
    for (int i = 0; i < synth_nformats; i++)
        if ((int)strlen(synth_formats[i].name) == len && strncmp(synth_formats[i].name, name, (size_t)len) == 0)
            return i;
    return -1;
}
