/* Jobs and the scheduler: a bounded FIFO in front of one worker thread per backend.
 *
 * Each worker owns its backend (backends are not thread-safe) and runs one job at a time: the
 * context check (prompt tokens + max_tokens against the backend's window), then backend_run with
 * a stream callback that feeds the job's pending text (through the streaming post-processor for
 * chat) and returns false once the job is cancelled. A concurrent engine scheduler can replace
 * this file: the HTTP side only uses sched_submit, sched_counts and the job fields. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double serve_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct job *job_new(void) {
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->cancel, false);
    j->refs = 1;
    serve_clean_init(&j->clean);
    return j;
}

void job_release(struct job *j) {
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left > 0)
        return;
    free(j->prompt);
    for (size_t i = 0; i < j->n_stop; i++)
        free(j->stop[i]);
    free(j->stop);
    free(j->pending);
    free(j->sent);
    free(j->answer);
    serve_clean_free(&j->clean);
    backend_result_free(&j->res);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static bool buf_add(char **p, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 1)
            nc *= 2;
        char *t = realloc(*p, nc);
        if (!t)
            return false;
        *p = t;
        *cap = nc;
    }
    memcpy(*p + *len, s, n);
    *len += n;
    (*p)[*len] = '\0';
    return true;
}

/* Caller holds j->mu. */
static void job_fail(struct job *j, int status, const char *type, const char *code,
                     const char *msg) {
    j->failed = true;
    j->err.status = status;
    j->err.type = type;
    j->err.code = code;
    j->err.param[0] = '\0';
    snprintf(j->err.message, sizeof j->err.message, "%s", msg);
    j->done = true;
    j->t_end = serve_now();
    pthread_cond_broadcast(&j->cv);
}

static bool on_stream(void *ud, size_t i, const char *text, size_t len) {
    (void)i;
    struct job *j = ud;
    pthread_mutex_lock(&j->mu);
    if (!j->t_first)
        j->t_first = serve_now();
    size_t before = j->pending_len;
    bool ok = j->chat ? serve_clean_feed(&j->clean, text, len, &j->pending, &j->pending_len,
                                         &j->pending_cap)
                      : buf_add(&j->pending, &j->pending_len, &j->pending_cap, text, len);
    if (ok && j->pending_len > before)
        ok = buf_add(&j->sent, &j->sent_len, &j->sent_cap, j->pending + before,
                     j->pending_len - before);
    if (j->pending_len > before)
        pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return ok && !atomic_load(&j->cancel);
}

static bool on_done(void *ud, size_t i, const struct backend_request *req, struct backend_result *r,
                    const struct ica_error *e) {
    (void)i;
    (void)req;
    struct job *j = ud;
    pthread_mutex_lock(&j->mu);
    if (e || !r) {
        const int code = e ? e->code : ICA_ERR_IO;
        const bool client =
            code == ICA_ERR_ARG || code == ICA_ERR_RANGE || code == ICA_ERR_UNSUPPORTED;
        job_fail(j, client ? 400 : 500, client ? "invalid_request_error" : "server_error",
                 client ? NULL : "backend_error", e ? e->msg : "backend error");
        pthread_mutex_unlock(&j->mu);
        return true;
    }
    j->res = *r;
    memset(r, 0, sizeof *r);
    const char *raw = j->res.text ? j->res.text : "";
    int rc = ICA_OK;
    if (j->chat) {
        rc = align_postprocess(raw, j->res.text_len, &j->answer, &j->answer_len, NULL);
    } else {
        j->answer = malloc(j->res.text_len + 1);
        if (j->answer) {
            memcpy(j->answer, raw, j->res.text_len);
            j->answer[j->res.text_len] = '\0';
            j->answer_len = j->res.text_len;
        } else {
            rc = ICA_ERR_NOMEM;
        }
    }
    if (rc != ICA_OK) {
        job_fail(j, 500, "server_error", NULL, "out of memory");
        pthread_mutex_unlock(&j->mu);
        return true;
    }
    /* The final answer is authoritative: stream what it adds to what was already sent (the
     * streamed part is a prefix of it unless a backend streamed text it later took back). */
    if (j->sent_len <= j->answer_len && memcmp(j->sent, j->answer, j->sent_len) == 0 &&
        j->answer_len > j->sent_len) {
        buf_add(&j->pending, &j->pending_len, &j->pending_cap, j->answer + j->sent_len,
                j->answer_len - j->sent_len);
        buf_add(&j->sent, &j->sent_len, &j->sent_cap, j->answer + j->sent_len,
                j->answer_len - j->sent_len);
    }
    j->done = true;
    j->t_end = serve_now();
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return true;
}

struct worker {
    struct sched *s;
    struct backend *be;
    pthread_t th;
    struct job *cur; /* guarded by s->mu (one-at-a-time workers) */
    /* workers over a backend with the asynchronous interface keep several jobs
     * in its batch at once; guarded by s->mu */
    size_t slots;
    struct job **active;
    uint64_t *handles;
    size_t n_active;
};

struct sched {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work available / stopping */
    pthread_cond_t idle_cv; /* a job finished */
    struct job *head, *tail;
    size_t queued, running, cap;
    bool stopping;
    struct worker *w;
    size_t n_w;
    size_t slots; /* jobs that can run at once, all workers together */
};

/* Cancellation and context checks before a job runs; false when it is
 * finished already (failed). */
static bool prepare_job(struct backend *be, struct job *j) {
    pthread_mutex_lock(&j->mu);
    j->t_start = serve_now();
    if (atomic_load(&j->cancel)) {
        job_fail(j, 499, "invalid_request_error", "cancelled", "request cancelled");
        pthread_mutex_unlock(&j->mu);
        return false;
    }
    pthread_mutex_unlock(&j->mu);
    /* Context check here, where the backend is owned: tokenizers are not shared across
     * threads. */
    const uint32_t n_ctx = backend_context_size(be);
    if (n_ctx) {
        const int64_t np = backend_count_tokens(be, j->prompt);
        char msg[300];
        if (np >= 0 && (uint64_t)np >= n_ctx) {
            snprintf(msg, sizeof msg,
                     "the prompt has %lld tokens and fills the context of %u tokens", (long long)np,
                     n_ctx);
            pthread_mutex_lock(&j->mu);
            job_fail(j, 400, "invalid_request_error", "context_length_exceeded", msg);
            snprintf(j->err.param, sizeof j->err.param, "%s", j->chat ? "messages" : "prompt");
            pthread_mutex_unlock(&j->mu);
            return false;
        }
        if (np >= 0 && (uint64_t)np + j->req.max_tokens > n_ctx) {
            if (j->explicit_max) {
                snprintf(msg, sizeof msg,
                         "max_tokens is %u but the prompt has %lld tokens: at most %llu new "
                         "tokens fit in the context of %u tokens",
                         j->req.max_tokens, (long long)np, (unsigned long long)(n_ctx - np), n_ctx);
                pthread_mutex_lock(&j->mu);
                job_fail(j, 400, "invalid_request_error", "context_length_exceeded", msg);
                snprintf(j->err.param, sizeof j->err.param, "max_tokens");
                pthread_mutex_unlock(&j->mu);
                return false;
            }
            j->req.max_tokens = (uint32_t)(n_ctx - (uint64_t)np);
        }
    }
    pthread_mutex_lock(&j->mu);
    j->admitted = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return true;
}

/* A job that ended without a result is reported as a backend failure. */
static void settle(struct job *j, int rc, const struct ica_error *e) {
    pthread_mutex_lock(&j->mu);
    if (!j->done) {
        const bool client = rc == ICA_ERR_ARG || rc == ICA_ERR_RANGE || rc == ICA_ERR_UNSUPPORTED;
        job_fail(j, client ? 400 : 500, client ? "invalid_request_error" : "server_error",
                 client ? NULL : "backend_error", rc != ICA_OK ? e->msg : "no result");
    }
    pthread_mutex_unlock(&j->mu);
}

static void run_job(struct backend *be, struct job *j) {
    if (!prepare_job(be, j))
        return;
    struct ica_error e = {0};
    int rc = backend_run(be, &j->req, 1, on_stream, on_done, j, &e);
    settle(j, rc, &e);
}

static bool job_is_done(struct job *j) {
    pthread_mutex_lock(&j->mu);
    const bool d = j->done;
    pthread_mutex_unlock(&j->mu);
    return d;
}

/* A worker over an asynchronous backend (the local engine's scheduler):
 * queued jobs join the running batch as slots free up, every poll is one
 * step of all of them, a cancelled job leaves the batch at the next step. */
static void async_worker(struct worker *w) {
    struct sched *s = w->s;
    struct job **fresh = calloc(w->slots, sizeof *fresh);
    struct job **ended = calloc(w->slots, sizeof *ended);
    if (!fresh || !ended) {
        free(fresh);
        free(ended);
        return;
    }
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && !s->head && w->n_active == 0)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head && w->n_active == 0)
            break; /* stopping and nothing left */
        size_t n_fresh = 0;
        while (s->head && w->n_active < w->slots && !s->stopping) {
            struct job *j = s->head;
            s->head = j->next;
            if (!s->head)
                s->tail = NULL;
            j->next = NULL;
            s->queued--;
            s->running++;
            w->handles[w->n_active] = 0;
            w->active[w->n_active++] = j;
            fresh[n_fresh++] = j;
        }
        pthread_mutex_unlock(&s->mu);
        for (size_t k = 0; k < n_fresh; k++) {
            struct job *j = fresh[k];
            if (!prepare_job(w->be, j))
                continue;
            struct ica_error e = {0};
            uint64_t h = 0;
            int rc = backend_submit(w->be, &j->req, on_stream, on_done, j, &h, &e);
            if (rc != ICA_OK)
                settle(j, rc, &e);
            pthread_mutex_lock(&s->mu);
            for (size_t a = 0; a < w->n_active; a++)
                if (w->active[a] == j)
                    w->handles[a] = h;
            pthread_mutex_unlock(&s->mu);
        }
        /* cancelled jobs (client gone, shutdown) leave the batch */
        pthread_mutex_lock(&s->mu);
        for (size_t a = 0; a < w->n_active; a++)
            if (w->handles[a] && atomic_load(&w->active[a]->cancel))
                backend_cancel(w->be, w->handles[a]);
        pthread_mutex_unlock(&s->mu);
        struct ica_error e = {0};
        if (backend_poll(w->be, &e) < 0) {
            pthread_mutex_lock(&s->mu);
            for (size_t a = 0; a < w->n_active; a++)
                settle(w->active[a], e.code ? e.code : ICA_ERR_IO, &e);
            pthread_mutex_unlock(&s->mu);
        }
        pthread_mutex_lock(&s->mu);
        size_t n_ended = 0;
        for (size_t a = 0; a < w->n_active;) {
            if (job_is_done(w->active[a])) {
                ended[n_ended++] = w->active[a];
                w->active[a] = w->active[w->n_active - 1];
                w->handles[a] = w->handles[w->n_active - 1];
                w->n_active--;
                s->running--;
            } else {
                a++;
            }
        }
        if (n_ended) {
            pthread_cond_broadcast(&s->idle_cv);
            pthread_mutex_unlock(&s->mu);
            for (size_t k = 0; k < n_ended; k++)
                job_release(ended[k]);
            pthread_mutex_lock(&s->mu);
        }
    }
    pthread_mutex_unlock(&s->mu);
    free(fresh);
    free(ended);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct sched *s = w->s;
    if (w->slots > 1) {
        async_worker(w);
        return NULL;
    }
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && !s->head)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->head) /* stopping and nothing left */
            break;
        struct job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        j->next = NULL;
        s->queued--;
        s->running++;
        w->cur = j;
        pthread_mutex_unlock(&s->mu);
        run_job(w->be, j);
        pthread_mutex_lock(&s->mu);
        w->cur = NULL;
        s->running--;
        pthread_cond_broadcast(&s->idle_cv);
        pthread_mutex_unlock(&s->mu);
        job_release(j);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sched_new(struct backend *const *backends, size_t n_workers, size_t slots_per_worker,
              size_t queue_cap, struct sched **out, struct ica_error *err) {
    *out = NULL;
    struct sched *s = calloc(1, sizeof *s);
    if (!s || !(s->w = calloc(n_workers, sizeof *s->w))) {
        free(s);
        return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    s->cap = queue_cap;
    for (size_t i = 0; i < n_workers; i++) {
        s->w[i].s = s;
        s->w[i].be = backends[i];
        s->w[i].slots = 1;
        if (slots_per_worker > 1 && backend_has_async(backends[i])) {
            s->w[i].slots = slots_per_worker;
            s->w[i].active = calloc(slots_per_worker, sizeof *s->w[i].active);
            s->w[i].handles = calloc(slots_per_worker, sizeof *s->w[i].handles);
            if (!s->w[i].active || !s->w[i].handles) {
                struct serve_error e = {0};
                sched_shutdown(s, &e, 0);
                sched_destroy(s);
                return ica_seterr(err, ICA_ERR_NOMEM, "out of memory");
            }
        }
        s->slots += s->w[i].slots;
        if (pthread_create(&s->w[i].th, NULL, worker_main, &s->w[i]) != 0) {
            struct serve_error e = {0};
            sched_shutdown(s, &e, 0);
            sched_destroy(s);
            return ica_seterr(err, ICA_ERR_IO, "cannot start worker thread %zu", i);
        }
        s->n_w = i + 1;
    }
    *out = s;
    return ICA_OK;
}

bool sched_submit(struct sched *s, struct job *j) {
    pthread_mutex_lock(&s->mu);
    /* n_w jobs run, cap more wait: queued counts jobs no worker has taken yet */
    if (s->stopping || s->queued + s->running >= s->slots + s->cap) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    pthread_mutex_lock(&j->mu);
    j->refs++;
    j->t_submit = serve_now();
    pthread_mutex_unlock(&j->mu);
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return true;
}

void sched_counts(struct sched *s, size_t *running, size_t *queued) {
    pthread_mutex_lock(&s->mu);
    *running = s->running;
    /* jobs a free worker is about to take are not waiting */
    size_t free_w = s->slots > s->running ? s->slots - s->running : 0;
    *queued = s->queued > free_w ? s->queued - free_w : 0;
    pthread_mutex_unlock(&s->mu);
}

void sched_shutdown(struct sched *s, const struct serve_error *e, double grace_s) {
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->stopping = true;
    struct job *q = s->head;
    s->head = s->tail = NULL;
    s->queued = 0;
    pthread_mutex_unlock(&s->mu);
    while (q) {
        struct job *next = q->next;
        pthread_mutex_lock(&q->mu);
        job_fail(q, e->status ? e->status : 503, e->type ? e->type : "server_error", e->code,
                 e->message[0] ? e->message : "the server is shutting down");
        pthread_mutex_unlock(&q->mu);
        job_release(q);
        q = next;
    }
    /* running jobs: finish within the grace period, else cancel */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    const double g = grace_s > 0 ? grace_s : 0;
    dl.tv_sec += (time_t)g;
    dl.tv_nsec += (long)((g - (double)(time_t)g) * 1e9);
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (s->running > 0 && pthread_cond_timedwait(&s->idle_cv, &s->mu, &dl) == 0) {
    }
    for (size_t i = 0; i < s->n_w; i++) {
        if (s->w[i].cur)
            atomic_store(&s->w[i].cur->cancel, true);
        for (size_t a = 0; a < s->w[i].n_active; a++)
            atomic_store(&s->w[i].active[a]->cancel, true);
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->n_w; i++)
        pthread_join(s->w[i].th, NULL);
}

void sched_destroy(struct sched *s) {
    if (!s)
        return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->idle_cv);
    for (size_t i = 0; s->w && i < s->n_w; i++) {
        free(s->w[i].active);
        free(s->w[i].handles);
    }
    free(s->w);
    free(s);
}
