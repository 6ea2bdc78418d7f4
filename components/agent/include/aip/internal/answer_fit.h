/* SPDX-License-Identifier: MIT */
/*
 * aip/internal/answer_fit.h — making a command_results answer fit an outbound limit (not
 * installed). The agent uses it so that every batch is answered even when its Results add up
 * to more than the connection can ever queue (docs/protocol.md §3.4: a device always answers).
 *
 * What is cut, in this order, each step only when the one before was not enough:
 * 1. Long strings inside Results' `result` values (a read_file's content, a command's stdout)
 *    keep a shorter tail — the end of a log is where the error is, as the executor's max_output
 *    cap does. One cap for every such string, the largest that makes the answer fit, never
 *    below AIP_FIT_MIN_TAIL bytes of JSON string text; strings at or under it are not touched.
 *    A cut string is cut at a character (escape) boundary, so the text stays valid JSON, and a
 *    result object with a top-level `"truncated": false` then says `true`.
 * 2. Whole Results, the largest first, become failure Results "result dropped: the answer
 *    would exceed the outbound limit of N bytes" (call_id and namespace kept, `result` null).
 * 3. Every Result goes: the answer is the batch failed, `status` "failed", `error` "results
 *    dropped: the answer to N actions would exceed the outbound limit of L bytes", an empty
 *    `action_results` list (correlated by prev_response_id and session_id all the same).
 *
 * Threads: no shared state. measure() is called a few times (each a full encode).
 */
#ifndef AIP_INTERNAL_ANSWER_FIT_H
#define AIP_INTERNAL_ANSWER_FIT_H

#include "aip/message.h"

#include <stdbool.h>
#include <stddef.h>

#define AIP_FIT_MIN_TAIL 1024 /* bytes of JSON string text a cut string keeps at least */

/* The exact encoded size of m as it would be sent: 0 and *size, or an AIP_E_* error. */
typedef int (*aip_fit_measure)(const aip_msg *m, void *user, size_t *size);

typedef struct aip_fit_report {
    size_t before;          /* encoded bytes of the answer as it came */
    size_t after;           /* as it is now (the last measure) */
    size_t strings_cut;     /* string values that kept only a tail */
    size_t tail;            /* the bytes of string text each of them kept at most */
    size_t results_dropped; /* Results replaced by failure Results naming the limit */
    bool minimal;           /* step 3: every Result had to go */
} aip_fit_report;

/* Cuts the command_results m (its contents are replaced in place) until measure() says it is
 * at most `limit` bytes. Returns 0 when it fits (rep says what was cut, if anything), the
 * measure's error, AIP_E_NOMEM, or AIP_E_TOO_LARGE when not even step 3 fits (m is then that
 * minimal answer). rep may be NULL. */
int aip_answer_fit(aip_msg *m, size_t limit, aip_fit_measure measure, void *user,
                   aip_fit_report *rep);

#endif /* AIP_INTERNAL_ANSWER_FIT_H */
