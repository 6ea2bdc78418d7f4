/* SPDX-License-Identifier: MIT */
/*
 * aip-test-server: what relay.c, tasks.c and admin.c share (nobody else includes this). The
 * order of server.h holds here too: admin.c calls relay.c and tasks.c, relay.c calls tasks.c,
 * tasks.c calls neither.
 */
#ifndef AIP_TEST_SERVER_RELAY_H
#define AIP_TEST_SERVER_RELAY_H

#include "server.h"

#define NOT_CONNECTED "Target device '%s' is not connected"

typedef struct task task;

/* tasks.c: the handlers of the frames about tasks (relay.c dispatches them) */
void handle_task(session *s, aip_msg *m);
void handle_results(session *s, aip_msg *m);
void handle_client_task_end(session *s, aip_msg *m);
/* A new task from requester (NULL: the HTTP API) to dev, registered by session_id sid. */
task *task_new(session *requester, session *dev, const char *sid, const char *task_name,
               const char *request);
void task_free(task *t);
/* Parses the task's request into its actions. On false, why holds the reason (always written). */
bool parse_actions(task *t, char *why, size_t wl);
void task_announce(task *t, const char *from);
void send_batch(task *t); /* the current batch, as one command */
/* s is closing: a device gone fails its tasks; a constellation gone cancels its own */
void tasks_forget(session *s);

/* relay.c: live device-info queries */
typedef struct live_req live_req;
/* Asks dev for fresh device info; the answer goes to requester (request_id), or through done
 * when requester is NULL. NULL on out of memory. */
live_req *live_start(session *dev, session *requester, const char *request_id, live_done done);
void live_free(live_req *l); /* without answering */

#endif
