/* casecheck.h — how a reference case checked outside cmocka fails
 * (refcheck.c, gencheck.c): a failed check writes its message to the
 * caller's buffer and jumps out of the case. For one .c file each: its
 * fail_msg is not cmocka's. */
#ifndef BAGEL_CASECHECK_H
#define BAGEL_CASECHECK_H

#include <setjmp.h>
#include <stdio.h>

#include "../../models/safetensors.h"

static jmp_buf *casecheck_jmp;
static char *casecheck_buf;
static size_t casecheck_len;

#define fail_msg(...)                                                                                                  \
    do {                                                                                                               \
        snprintf(casecheck_buf, casecheck_len, __VA_ARGS__);                                                           \
        longjmp(*casecheck_jmp, 1);                                                                                    \
    } while (0)

/* In a function returning int: runs CALL with failures going to msg
 * (msglen bytes); returns 0, or -1 after a failed check (what the failed
 * case allocated is left to the process's end). */
#define CASECHECK_RUN(msg, msglen, CALL)                                                                               \
    do {                                                                                                               \
        jmp_buf jb_;                                                                                                   \
        casecheck_jmp = &jb_;                                                                                          \
        casecheck_buf = (msg);                                                                                         \
        casecheck_len = (msglen);                                                                                      \
        (msg)[0] = 0;                                                                                                  \
        if (setjmp(jb_))                                                                                               \
            return -1;                                                                                                 \
        CALL;                                                                                                          \
        return 0;                                                                                                      \
    } while (0)

/* a golden file's tensor, or the case fails naming it */
static inline const st_tensor_t *gold(const st_file_t *f, const char *name)
{
    const st_tensor_t *t = st_find(f, name);
    if (!t)
        fail_msg("golden has no tensor %s", name);
    return t;
}

#endif
