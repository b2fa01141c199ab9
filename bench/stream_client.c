/*
 * Token-timing load generator for bench/latency.ts, in C so that measuring
 * 50 000 frames/s costs the shared 2-core machine as little CPU as possible
 * (one epoll loop, one read per wake-up, no allocation per frame). It does
 * what latency.ts's Deno client does and prints the same JSON:
 *
 *   stream_client HOST PORT STREAMS RANK PROCS START_EPOCH_MS TTFT_MS ITL_MS TOKENS [STAMP]
 *
 * Streams RANK, RANK+PROCS, ... of STREAMS are started at
 * START_EPOCH_MS + i * gap (gap = max(ITL, STREAMS * 0.5 ms) / STREAMS), each
 * on its own keep-alive connection opened beforehand. Every SSE frame
 * ("\n\n"-terminated) is timestamped on arrival; token k's schedule is
 * send time + TTFT + k * ITL on this process's monotonic clock. Each
 * stream's offset (the median of its signed errors) and each token's jitter
 * around it are reported too.
 *
 * STAMP "kernel" (the default): a frame's arrival is the kernel's receive
 * timestamp of the bytes at this socket (SO_TIMESTAMPNS), so time this
 * process spends waiting for a CPU, which the server and the other client
 * share, is not counted as the server's lateness. STAMP "read": the time
 * the read returned (what a client application sees, scheduling included).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd;
  int frames; /* SSE frames seen: tokens, then [DONE] */
  int prev_nl;
  int done;
  int heard; /* any byte of the response seen */
  double sent;
} Stream;

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int kernel_stamps = 1;

static double now_ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int dial(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, host, &a.sin_addr);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    exit(1);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (kernel_stamps) setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  return fd;
}

static int request(char *out, size_t cap, const char *host, int port, int tokens) {
  char body[256];
  int blen = snprintf(body, sizeof body,
                      "{\"model\":\"bench-model\",\"prompt\":\"hello\",\"max_tokens\":%d,"
                      "\"ignore_eos\":true,\"stream\":true}",
                      tokens);
  return snprintf(out, cap,
                  "POST /v1/completions HTTP/1.1\r\nhost: %s:%d\r\n"
                  "content-type: application/json\r\ncontent-length: %d\r\n\r\n%s",
                  host, port, blen, body);
}

static void send_all(int fd, const char *p, int n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      perror("write");
      exit(1);
    }
    p += w;
    n -= (int)w;
  }
}

/*
 * Reads what is there; *at is when it arrived, on CLOCK_REALTIME: the
 * kernel's timestamp of the newest bytes read, else `fallback`.
 */
static ssize_t read_stamped(int fd, char *buf, size_t cap, double fallback, double *at) {
  *at = fallback;
  if (!kernel_stamps) return read(fd, buf, cap);
  struct iovec iov = {.iov_base = buf, .iov_len = cap};
  char ctl[CMSG_SPACE(sizeof(struct timespec))];
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof ctl};
  ssize_t r = recvmsg(fd, &msg, 0);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); r > 0 && c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(c), sizeof ts);
      *at = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
    }
  }
  return r;
}

/* Counts the frames in buf, carrying the "previous byte was \n" state. */
static int count_frames(const char *buf, ssize_t n, int *prev_nl) {
  int got = 0;
  for (ssize_t i = 0; i < n; i++) {
    int nl = buf[i] == '\n';
    if (nl && *prev_nl) {
      got++;
      *prev_nl = 0;
    } else {
      *prev_nl = nl;
    }
  }
  return got;
}

/* Rounds of short streams (as latency.ts's Deno client does) so that the
 * server's request and token paths are fully compiled when measuring. */
#define WARM_ROUNDS 6
#define WARM_STREAMS 100
#define WARM_TOKENS 10
static void warm_up(const char *host, int port) {
  char req[512], buf[65536];
  int len = request(req, sizeof req, host, port, WARM_TOKENS), fds[WARM_STREAMS];
  for (int round = 0; round < WARM_ROUNDS; round++) {
    for (int i = 0; i < WARM_STREAMS; i++) {
      fds[i] = dial(host, port);
      send_all(fds[i], req, len);
    }
    for (int i = 0; i < WARM_STREAMS; i++) {
      int prev = 0, frames = 0;
      while (frames <= WARM_TOKENS) {
        ssize_t n = read(fds[i], buf, sizeof buf);
        if (n <= 0) break;
        frames += count_frames(buf, n, &prev);
      }
      close(fds[i]);
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 10 && argc != 11) {
    fprintf(stderr,
            "usage: %s HOST PORT STREAMS RANK PROCS START_EPOCH_MS TTFT ITL TOKENS [kernel|read]\n",
            argv[0]);
    return 2;
  }
  if (argc == 11) kernel_stamps = strcmp(argv[10], "read") != 0;
  const char *host = argv[1];
  int port = atoi(argv[2]), streams = atoi(argv[3]), rank = atoi(argv[4]);
  int procs = atoi(argv[5]);
  double start_epoch = atof(argv[6]), ttft = atof(argv[7]), itl = atof(argv[8]);
  int tokens = atoi(argv[9]);

  warm_up(host, port);
  int mine = 0;
  for (int i = rank; i < streams; i += procs) mine++;
  Stream *s = calloc(mine, sizeof *s);
  int ep = epoll_create1(0);
  for (int j = 0; j < mine; j++) {
    s[j].fd = dial(host, port);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)j};
    epoll_ctl(ep, EPOLL_CTL_ADD, s[j].fd, &ev);
  }
  char req[512];
  int len = request(req, sizeof req, host, port, tokens);
  double ramp = streams * 0.5 > itl ? streams * 0.5 : itl;
  double gap = streams > 1 ? ramp / streams : 0;
  /* The measured run is timed on CLOCK_REALTIME, the clock of the start
   * epoch and of the kernel's receive timestamps (a few seconds: slewing
   * does not matter). */
  double t0 = start_epoch;

  size_t cap = (size_t)mine * tokens;
  double *errs = malloc(cap * sizeof *errs), *drifts = malloc(mine * sizeof *drifts);
  double *serr = malloc(cap * sizeof *serr); /* signed, per stream: j * tokens + k */
  double *heads = malloc(mine * sizeof *heads);
  int nheads = 0;
  int *nserr = calloc(mine, sizeof *nserr);
  size_t nerr = 0;
  int ndrift = 0, started = 0, finished = 0, completed = 0;
  double signed_sum = 0;
  long counted = 0;
  static char buf[65536];
  struct epoll_event evs[256];

  while (finished < mine) {
    double now = now_ms(CLOCK_REALTIME);
    while (started < mine && t0 + (rank + (double)started * procs) * gap <= now) {
      s[started].sent = now_ms(CLOCK_REALTIME);
      send_all(s[started].fd, req, len);
      started++;
    }
    int timeout = -1;
    if (started < mine) {
      double next = t0 + (rank + (double)started * procs) * gap - now_ms(CLOCK_REALTIME);
      timeout = next <= 0 ? 0 : (int)next + 1; /* late is fine: schedules start at send time */
    }
    int n = epoll_wait(ep, evs, 256, timeout);
    double woke = now_ms(CLOCK_REALTIME);
    for (int e = 0; e < n; e++) {
      Stream *st = &s[evs[e].data.u32];
      double at;
      ssize_t r = read_stamped(st->fd, buf, sizeof buf, woke, &at);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) { /* closed before [DONE] */
        if (!st->done) {
          st->done = 1;
          finished++;
        }
        epoll_ctl(ep, EPOLL_CTL_DEL, st->fd, NULL);
        continue;
      }
      if (!st->heard) {
        st->heard = 1;
        heads[nheads++] = at - st->sent;
      }
      int got = count_frames(buf, r, &st->prev_nl);
      for (int g = 0; g < got; g++) {
        int k = st->frames++;
        if (k >= tokens) continue; /* [DONE] */
        double err = at - (st->sent + ttft + k * itl);
        signed_sum += err;
        serr[(size_t)(st - s) * tokens + nserr[st - s]++] = err;
        counted++;
        errs[nerr++] = err < 0 ? -err : err;
        if (k == tokens - 1) drifts[ndrift++] = err < 0 ? -err : err;
      }
      if (st->frames > tokens && !st->done) {
        st->done = 1;
        finished++;
        completed++;
        epoll_ctl(ep, EPOLL_CTL_DEL, st->fd, NULL);
      }
    }
  }

  /* Keep every connection open until all load generators are done (the last
   * stream of the run plus a margin): hundreds of connections closing at once
   * cost the server a few ms, which would land on the last tokens of the
   * other process's streams. */
  double end = t0 + ramp + ttft + tokens * itl + 300;
  for (double now; (now = now_ms(CLOCK_REALTIME)) < end;) usleep((useconds_t)((end - now) * 1000));

  /* Same JSON as latency.ts's Deno client (ClientPart). */
  printf("{\"errs\":[");
  for (size_t i = 0; i < nerr; i++) printf(i ? ",%.4f" : "%.4f", errs[i]);
  printf("],\"drifts\":[");
  for (int i = 0; i < ndrift; i++) printf(i ? ",%.4f" : "%.4f", drifts[i]);
  /* Each stream's offset: the median of its signed errors, found once. */
  double *offset = malloc(mine * sizeof *offset);
  double *tmp = malloc(tokens * sizeof *tmp);
  for (int j = 0; j < mine; j++) {
    if (nserr[j] == 0) continue;
    memcpy(tmp, serr + (size_t)j * tokens, nserr[j] * sizeof *tmp);
    qsort(tmp, nserr[j], sizeof *tmp, by_value);
    offset[j] = tmp[nserr[j] / 2];
  }
  printf("],\"offsets\":[");
  int first = 1;
  for (int j = 0; j < mine; j++) {
    if (nserr[j] == 0) continue;
    printf(first ? "%.4f" : ",%.4f", offset[j] < 0 ? -offset[j] : offset[j]);
    first = 0;
  }
  printf("],\"jitter\":[");
  first = 1;
  for (int j = 0; j < mine; j++) {
    for (int k = 0; k < nserr[j]; k++) {
      double d = serr[(size_t)j * tokens + k] - offset[j];
      printf(first ? "%.4f" : ",%.4f", d < 0 ? -d : d);
      first = 0;
    }
  }
  printf("],\"heads\":[");
  for (int i = 0; i < nheads; i++) printf(i ? ",%.4f" : "%.4f", heads[i]);
  printf("],\"signed\":%.4f,\"tokens\":%ld,\"completed\":%d}\n", signed_sum, counted, completed);
  for (int j = 0; j < mine; j++) close(s[j].fd);
  return 0;
}
