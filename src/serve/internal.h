/* serve internals: jobs, the scheduler seam and the HTTP side. */
#ifndef ICALIGN_SERVE_INTERNAL_H
#define ICALIGN_SERVE_INTERNAL_H

#include "icalign/serve.h"

#include <pthread.h>
#include <stdatomic.h>

/* One generation request. Shared by the connection thread that made it and the worker that
 * runs it (refs); every field below the mutex line is guarded by mu. */
struct job {
    /* set once before submission */
    struct backend_request req; /* req.prompt and req.stop point into this job */
    char *prompt;
    char **stop;
    size_t n_stop;
    bool chat;          /* post-process the answer (align) */
    bool stream;        /* the connection streams deltas */
    bool explicit_max;  /* max_tokens came from the request: too big is an error */
    atomic_bool cancel; /* the client left or the server stops: stop generating */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool admitted; /* past the context check: the response can start */
    bool done;
    /* output: text not yet taken by the connection (cleaned for chat) */
    char *pending;
    size_t pending_len, pending_cap;
    /* everything made pending so far, to reconcile with the final answer */
    char *sent;
    size_t sent_len, sent_cap;
    struct serve_clean clean;
    /* result */
    struct backend_result res;
    char *answer; /* final text: post-processed for chat, raw for completions (NUL-term.) */
    size_t answer_len;
    bool failed;
    struct serve_error err;
    double t_submit, t_start, t_first, t_end;
    struct job *next; /* queue link */
};

struct job *job_new(void);
void job_release(struct job *j); /* drops one reference; frees on the last */

/* ---- scheduler: a bounded queue in front of the workers. A future engine scheduler that
 * batches many sequences replaces this file behind the same three calls. ---- */
struct sched;
/* slots_per_worker > 1: a worker over a backend with the asynchronous interface keeps that many
 * jobs in the backend's batch at once (continuous batching); others run one job at a time. */
int sched_new(struct backend *const *backends, size_t n_workers, size_t slots_per_worker,
              size_t queue_cap, struct sched **out, struct ica_error *err);
/* Takes a reference to j and queues it; false when the queue is full (429) or stopping. */
bool sched_submit(struct sched *s, struct job *j);
void sched_counts(struct sched *s, size_t *running, size_t *queued);
/* Refuses new jobs, fails every queued job with e, waits up to grace_s for running ones, cancels
 * those still running and joins the workers. sched_submit keeps working (returns false). */
void sched_shutdown(struct sched *s, const struct serve_error *e, double grace_s);
void sched_destroy(struct sched *s);

double serve_now(void);

#endif
