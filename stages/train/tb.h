/* tb.h — a TensorBoard event-file writer for the trainer's scalars.
 *
 * The file is what TensorFlow and torch.utils.tensorboard write, so that
 * TensorBoard, and W&B through its TensorBoard sync, show a run's curves:
 * a sequence of TFRecords (uint64 length LE, masked CRC32C of the length,
 * the bytes, masked CRC32C of the bytes), each holding one serialized
 * tensorflow.Event. The first Event carries file_version "brain.Event:2";
 * each later one carries one Summary value. Records are encoded byte for byte
 * as torch.utils.tensorboard's SummaryWriter encodes add_scalar and add_text
 * (tests/unit/test_tb.c compares against its files).
 *
 * Not a general protobuf or TensorBoard library: no histograms, images or
 * graphs, and no reader (tests/unit/data/tb/read_events.py is one). */
#ifndef BAGEL_TB_H
#define BAGEL_TB_H

#include <stddef.h>
#include <stdint.h>

/* Bounds on what one record may carry; a longer tag or text is an error. */
#define TB_TAG_MAX  1024      // bytes of UTF-8
#define TB_TEXT_MAX (1 << 20) // bytes

typedef struct tb_writer tb_writer_t;

/* Creates dir (and its parents) if missing, then the new file
 * dir/events.out.tfevents.<unix-seconds, 10 digits>.<hostname>.<pid>.<suffix>
 * (without ".<suffix>" when suffix is NULL or ""), and writes the version
 * record. TensorBoard finds the file by "tfevents" in its name. An existing
 * file of that name is never overwritten: two writers of one process opened in
 * the same second need different suffixes. suffix may not contain '/'.
 * Returns NULL with a message naming the path in err on failure. */
tb_writer_t *tb_open(const char *dir, const char *suffix, char *err, size_t errlen);

/* The file's path, for logs. */
const char *tb_path(const tb_writer_t *w);

/* Append Event{wall_time, step, summary{value{tag, simple_value}}}; what
 * SummaryWriter.add_scalar(tag, value, step, walltime) writes. wall_time is
 * Unix seconds (TensorBoard's "relative" and "wall" axes use it). tag is
 * non-empty UTF-8 of at most TB_TAG_MAX bytes; "/" groups tags into sections
 * ("train/loss").
 *
 * Each record goes to the file (one write) before the call returns, so a
 * TensorBoard watching the run sees it; it is durable after tb_flush. A
 * failed write (a full disk, say) is cut back off the file, which stays a
 * sequence of whole records, and the call returns -1; tb_error says why,
 * naming the path. A later call may succeed (space freed); if the file could
 * not be cut back, every later call fails too.
 * Returns 0 or -1. */
int tb_scalar(tb_writer_t *w, const char *tag, int64_t step, double wall_time, float value);

/* Append a text summary, as SummaryWriter.add_text writes it (a DT_STRING
 * tensor of shape [1] with plugin "text"; TensorBoard renders it as
 * Markdown). Note add_text appends "/text_summary" to its tag and this does
 * not: pass the tag to show. text is at most TB_TEXT_MAX bytes. Errors as
 * tb_scalar. */
int tb_text(tb_writer_t *w, const char *tag, int64_t step, double wall_time, const char *text);

/* fsync the file: every record written so far survives a crash.
 * Returns 0 or -1 (tb_error says why). */
int tb_flush(tb_writer_t *w);

/* The message of the last failure ("" if none). */
const char *tb_error(const tb_writer_t *w);

/* fsync and close, free, and set *w to NULL. A failure here is lost: call
 * tb_flush first where it matters (the end of a run). NULL is fine. */
void tb_close(tb_writer_t **w);

/* CRC32C (Castagnoli) of n bytes, continuing from crc (0 to start), and the
 * masked form TFRecord stores. Public for the tests and for readers. */
uint32_t tb_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t tb_crc_mask(uint32_t crc);

#endif
