/* scene.c — see scene.h. */
#include "scene.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

const synth_colour_t synth_colours[] = {
    {"red", {220, 30, 30}, 1, 0},     {"orange", {250, 140, 20}, 1, 0}, {"yellow", {250, 220, 30}, 1, 0},
    {"green", {40, 160, 60}, 1, 0},   {"blue", {30, 80, 220}, 1, 0},    {"purple", {130, 50, 180}, 1, 0},
    {"pink", {250, 130, 190}, 1, 0},  {"brown", {120, 70, 30}, 1, 0},   {"black", {0, 0, 0}, 1, 1},
    {"white", {255, 255, 255}, 1, 1}, {"gray", {128, 128, 128}, 1, 1},  {"beige", {235, 220, 190}, 0, 1},
};
const int synth_ncolours = (int)(sizeof synth_colours / sizeof synth_colours[0]);

const int synth_size_permille[SYNTH_NSIZES] = {200, 350, 500};

static const char *const shape_names[SYNTH_NSHAPES] = {"circle", "square", "triangle", "star", "cross"};
static const char *const size_names[SYNTH_NSIZES] = {"small", "medium", "large"};
static const char *const pos_phrases[SYNTH_NPOS] = {
    "at the top left", "at the top",         "at the top right", "on the left",         "in the center",
    "on the right",    "at the bottom left", "at the bottom",    "at the bottom right",
};

/* Jitter of the centre around its cell's centre and the least gap between
 * the shape and the image border, permille of the side. The largest shape's
 * half extent plus the margin (250 + 30) is under a third of the side, so the
 * clamped centre never leaves its cell. */
#define JITTER 60
#define MARGIN 30

const char *synth_shape_name(int shape) { return shape >= 0 && shape < SYNTH_NSHAPES ? shape_names[shape] : "?"; }
const char *synth_size_name(int size) { return size >= 0 && size < SYNTH_NSIZES ? size_names[size] : "?"; }
const char *synth_position_phrase(int pos) { return pos >= 0 && pos < SYNTH_NPOS ? pos_phrases[pos] : "?"; }

const char *synth_position_place(int pos)
{
    // the phrase without its preposition: "the top left"
    const char *p = synth_position_phrase(pos);
    const char *sp = strchr(p, ' ');
    return sp ? sp + 1 : p;
}

/* A colour for the role (shape or background) other than `not1` and `not2`. */
static int pick_colour(synth_rng_t *r, int background, int not1, int not2)
{
    int cand[32], n = 0;
    for (int i = 0; i < synth_ncolours && n < 32; i++) {
        int ok = background ? synth_colours[i].background_ok : synth_colours[i].shape_ok;
        if (ok && i != not1 && i != not2)
            cand[n++] = i;
    }
    return cand[synth_rng_below(r, n)];
}

/* A value in [0, n) other than `not`. */
static int pick_other(synth_rng_t *r, int n, int not )
{
    int v = synth_rng_below(r, n - 1);
    return v >= not ? v + 1 : v;
}

synth_scene_t synth_scene_random(synth_rng_t *r)
{
    synth_scene_t s;
    s.shape = synth_rng_below(r, SYNTH_NSHAPES);
    s.colour = pick_colour(r, 0, -1, -1);
    s.size = synth_rng_below(r, SYNTH_NSIZES);
    s.pos = synth_rng_below(r, SYNTH_NPOS);
    s.bg = pick_colour(r, 1, s.colour, -1);
    s.jx = synth_rng_range(r, -JITTER, JITTER);
    s.jy = synth_rng_range(r, -JITTER, JITTER);
    return s;
}

static int clamp(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void synth_scene_geometry(const synth_scene_t *s, int px, int *cx8, int *cy8, int *half8)
{
    int size = s->size >= 0 && s->size < SYNTH_NSIZES ? s->size : SYNTH_MEDIUM;
    int half = synth_size_permille[size] / 2;
    int col = s->pos % 3, row = s->pos / 3;
    int x = clamp((2 * col + 1) * 1000 / 6 + s->jx, half + MARGIN, 1000 - half - MARGIN);
    int y = clamp((2 * row + 1) * 1000 / 6 + s->jy, half + MARGIN, 1000 - half - MARGIN);
    *cx8 = (int)((long long)x * px * 8 / 1000);
    *cy8 = (int)((long long)y * px * 8 / 1000);
    *half8 = (int)((long long)half * px * 8 / 1000);
}

void synth_instruction(const synth_scene_t *s, const synth_scene_t *t, int kind, char *out, size_t n)
{
    const char *shape = synth_shape_name(s->shape);
    switch (kind) {
    case SYNTH_EDIT_COLOUR: snprintf(out, n, "Make the %s %s.", shape, synth_colours[t->colour].name); break;
    case SYNTH_EDIT_SHAPE: snprintf(out, n, "Turn the %s into a %s.", shape, synth_shape_name(t->shape)); break;
    case SYNTH_EDIT_SIZE: snprintf(out, n, "Make the %s %s.", shape, synth_size_name(t->size)); break;
    case SYNTH_EDIT_POSITION: snprintf(out, n, "Move the %s to %s.", shape, synth_position_place(t->pos)); break;
    default: snprintf(out, n, "Change the background to %s.", synth_colours[t->bg].name); break;
    }
}

synth_scene_t synth_scene_edit(const synth_scene_t *s, int kind, synth_rng_t *r, char *instr, size_t n)
{
    synth_scene_t t = *s;
    switch (kind) {
    case SYNTH_EDIT_COLOUR: t.colour = pick_colour(r, 0, s->colour, s->bg); break;
    case SYNTH_EDIT_SHAPE: t.shape = pick_other(r, SYNTH_NSHAPES, s->shape); break;
    case SYNTH_EDIT_SIZE: t.size = pick_other(r, SYNTH_NSIZES, s->size); break;
    case SYNTH_EDIT_POSITION: t.pos = pick_other(r, SYNTH_NPOS, s->pos); break;
    default: t.bg = pick_colour(r, 1, s->bg, s->colour); break;
    }
    synth_instruction(s, &t, kind, instr, n);
    return t;
}

void synth_caption(const synth_scene_t *s, char *out, size_t n)
{
    snprintf(out, n, "a %s %s %s %s on a %s background", synth_size_name(s->size), synth_colours[s->colour].name,
             synth_shape_name(s->shape), synth_position_phrase(s->pos), synth_colours[s->bg].name);
}

void synth_capitalize(const char *in, char *out, size_t n)
{
    snprintf(out, n, "%s", in);
    if (n && out[0])
        out[0] = (char)toupper((unsigned char)out[0]);
}

void synth_question(const synth_scene_t *s, int kind, synth_rng_t *r, char *q, size_t qn, char *a, size_t an)
{
    char tmp[256];
    switch (kind) {
    case SYNTH_Q_COLOUR:
        snprintf(q, qn, "What colour is the shape?");
        synth_capitalize(synth_colours[s->colour].name, tmp, sizeof tmp);
        snprintf(a, an, "%s.", tmp);
        break;
    case SYNTH_Q_SHAPE:
        snprintf(q, qn, "What shape is it?");
        snprintf(a, an, "A %s.", synth_shape_name(s->shape));
        break;
    case SYNTH_Q_SIZE:
        snprintf(q, qn, "Is the shape small, medium or large?");
        synth_capitalize(synth_size_name(s->size), tmp, sizeof tmp);
        snprintf(a, an, "%s.", tmp);
        break;
    case SYNTH_Q_POSITION:
        snprintf(q, qn, "Where is the shape?");
        synth_capitalize(synth_position_phrase(s->pos), tmp, sizeof tmp);
        snprintf(a, an, "%s.", tmp);
        break;
    case SYNTH_Q_BACKGROUND:
        snprintf(q, qn, "What colour is the background?");
        synth_capitalize(synth_colours[s->bg].name, tmp, sizeof tmp);
        snprintf(a, an, "%s.", tmp);
        break;
    case SYNTH_Q_IS_COLOUR: {
        // half the time the true colour, so "Yes." and "No." are equally likely
        int c = synth_rng_chance(r, 1, 2) ? s->colour : pick_colour(r, 0, s->colour, s->bg);
        snprintf(q, qn, "Is the shape %s?", synth_colours[c].name);
        snprintf(a, an, "%s", c == s->colour ? "Yes." : "No.");
        break;
    }
    case SYNTH_Q_IS_SHAPE: {
        int sh = synth_rng_chance(r, 1, 2) ? s->shape : pick_other(r, SYNTH_NSHAPES, s->shape);
        snprintf(q, qn, "Is there a %s in the image?", synth_shape_name(sh));
        snprintf(a, an, "%s", sh == s->shape ? "Yes." : "No.");
        break;
    }
    default:
        snprintf(q, qn, "Describe the image.");
        synth_caption(s, tmp, sizeof tmp);
        synth_capitalize(tmp, a, an);
        if (strlen(a) + 1 < an)
            strcat(a, ".");
        break;
    }
}
