/* scene.h — the "shapes" world: one coloured shape on a plain background,
 * described by five properties (shape, colour, size, position, background),
 * and everything said about it: captions, edit instructions, questions and
 * answers. Every text is derived from the properties alone, so it is exactly
 * true of the image that draw.c renders from the same scene.
 *
 * Geometry is in integers (permille of the image side), so a scene renders
 * to the same pixels on every platform. */
#ifndef BAGEL_SYNTH_SCENE_H
#define BAGEL_SYNTH_SCENE_H

#include "rng.h"

#include <stddef.h>
#include <stdint.h>

enum { SYNTH_CIRCLE, SYNTH_SQUARE, SYNTH_TRIANGLE, SYNTH_STAR, SYNTH_CROSS, SYNTH_NSHAPES };
enum { SYNTH_SMALL, SYNTH_MEDIUM, SYNTH_LARGE, SYNTH_NSIZES };
/* Positions: the cells of a 3x3 grid, row-major from the top left. */
enum { SYNTH_NPOS = 9, SYNTH_POS_CENTER = 4 };
/* Properties an edit can change, one per step. */
enum { SYNTH_EDIT_COLOUR, SYNTH_EDIT_SHAPE, SYNTH_EDIT_SIZE, SYNTH_EDIT_POSITION, SYNTH_EDIT_BACKGROUND, SYNTH_NEDITS };
/* Question kinds of the VQA conversations. */
enum {
    SYNTH_Q_COLOUR,
    SYNTH_Q_SHAPE,
    SYNTH_Q_SIZE,
    SYNTH_Q_POSITION,
    SYNTH_Q_BACKGROUND,
    SYNTH_Q_IS_COLOUR,
    SYNTH_Q_IS_SHAPE,
    SYNTH_Q_DESCRIBE,
    SYNTH_NQUESTIONS
};

/* No shape: an empty canvas (the first step of a "how to draw" sequence). */
#define SYNTH_NONE (-1)

typedef struct {
    const char *name;
    uint8_t rgb[3];
    int shape_ok; // may colour a shape
    int background_ok;
} synth_colour_t;

/* The palette; docs/synthetic-data.md lists it, and tests/stage/synth.bats
 * keeps its own copy to check pixels against captions. */
extern const synth_colour_t synth_colours[];
extern const int synth_ncolours;

typedef struct {
    int shape;  // SYNTH_CIRCLE.., or SYNTH_NONE
    int colour; // index into synth_colours
    int size;   // SYNTH_SMALL..
    int pos;    // grid cell 0..8
    int bg;     // index into synth_colours
    int jx, jy; // offset of the centre from its cell's centre, permille of the side
} synth_scene_t;

/* Extent (bounding box side) of each size, permille of the image side. */
extern const int synth_size_permille[SYNTH_NSIZES];

const char *synth_shape_name(int shape);
const char *synth_size_name(int size);

/* A random scene. */
synth_scene_t synth_scene_random(synth_rng_t *r);
/* The shape's centre and half extent in pixels times 8, for an image of side
 * px; the shape lies inside the image with a margin, its centre in its cell. */
void synth_scene_geometry(const synth_scene_t *s, int px, int *cx8, int *cy8, int *half8);

/* Change one property (kind SYNTH_EDIT_*) to a different valid value; writes
 * the instruction that says so ("Make the circle blue."). */
synth_scene_t synth_scene_edit(const synth_scene_t *s, int kind, synth_rng_t *r, char *instr, size_t n);
/* The instruction for changing s into t, which differ in property `kind`. */
void synth_instruction(const synth_scene_t *s, const synth_scene_t *t, int kind, char *out, size_t n);

/* "a small red circle at the top left on a white background" */
void synth_caption(const synth_scene_t *s, char *out, size_t n);
/* "at the top left", "in the center", "on the left" */
const char *synth_position_phrase(int pos);
/* "the top left", "the center", "the left" */
const char *synth_position_place(int pos);
/* A question of kind SYNTH_Q_* about the scene and its exact answer. */
void synth_question(const synth_scene_t *s, int kind, synth_rng_t *r, char *q, size_t qn, char *a, size_t an);

/* Copy with the first letter in capitals. */
void synth_capitalize(const char *in, char *out, size_t n);

#endif
