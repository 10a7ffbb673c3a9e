/*
 * udp_probe: a small client of stopgate's UDP frames for the integration tests
 * (tests/integration/test_udp.py). It speaks through libstopgate's codec only.
 *
 *   STOPGATE_SECRET=... udp_probe HOST PORT AGENT STEP...
 *
 * Steps, run in order over one socket (one request datagram each, prints one JSON line
 * per reply datagram):
 *   hello                       HELLO, derive the key (Argon2id) from the secret
 *   check BANK ACCOUNT[,BANK ACCOUNT...]   one CHECK message per pair in one datagram
 *   stop RID BANK ACCOUNT CASE AMOUNT
 *   stops N RIDPREFIX BANK ACCTPREFIX CASE AMOUNT   N STOPs in one datagram: request ids
 *                               RIDPREFIX-k, accounts ACCTPREFIX<k, 4 digits>X, k = 0..N-1
 *   ping
 *   replay                      send the previous datagram again (same seq)
 *   badmac                      a PING whose MAC is wrong
 *   oldepoch                    a PING signed with epoch - 1
 *   truncated N                 a signed PING with its last N bytes cut off
 *   raw HEX                     send raw bytes (no reply expected within the timeout is ok)
 * A reply not received within 1 s (UDP_PROBE_WAIT_MS) prints {"timeout":true}; a reply
 * carries "ms", the time from sending the request to receiving it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <stopgate/frame.h>

static int fd;
static struct sockaddr_in gw;
static uint8_t key[SG_FRAME_KEY_BYTES];
static uint32_t agent_id, epoch;
static uint64_t seq;
static uint8_t last[SG_FRAME_BYTES_MAX];
static size_t last_len;
static struct timespec sent_at;
static int wait_ms = 1000;

static void send_dgram(const uint8_t *p, size_t n) {
    if (sendto(fd, p, n, 0, (struct sockaddr *)&gw, sizeof gw) < 0) perror("sendto");
    memcpy(last, p, n);
    last_len = n;
    clock_gettime(CLOCK_MONOTONIC, &sent_at);
}

static void recv_print(void) {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, wait_ms) <= 0) {
        printf("{\"timeout\":true}\n");
        return;
    }
    uint8_t buf[SG_FRAME_BYTES_MAX + 1];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    sg_frame_hdr h;
    if (n < 0 || sg_frame_parse_hdr(buf, (size_t)n, &h) != 0) {
        printf("{\"malformed_reply\":true}\n");
        return;
    }
    bool mac_ok = sg_frame_verify(buf, (size_t)n, key);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ms = (double)(now.tv_sec - sent_at.tv_sec) * 1e3 + (double)(now.tv_nsec - sent_at.tv_nsec) / 1e6;
    printf("{\"ms\":%.1f,\"status\":%u,\"seq\":%llu,\"epoch\":%u,\"mac_ok\":%s,\"replies\":[", ms, h.status,
           (unsigned long long)h.seq, h.epoch, mac_ok ? "true" : "false");
    sg_frame_reader r;
    sg_frame_read_begin(&r, buf, (size_t)n, &h);
    sg_reply rep;
    int k = 0, rc;
    while ((rc = sg_frame_next_reply(&r, &rep)) == 1) {
        if (rep.type == (SG_MSG_HELLO | 0x80)) {
            printf("%s{\"type\":%u,\"epoch\":%u}", k++ ? "," : "", rep.type, rep.epoch);
            epoch = rep.epoch;
            const char *secret = getenv("STOPGATE_SECRET");
            uint8_t ak[32];
            if (!secret || sg_frame_derive_key(secret, rep.salt, rep.opslimit, rep.memlimit, ak) != 0) {
                fprintf(stderr, "udp_probe: cannot derive the key\n");
                exit(1);
            }
            sg_frame_key(ak, key);
        } else {
            printf("%s{\"type\":%u,\"code\":%u,\"err\":%u,\"score\":%u,\"order_no\":%u,\"mask\":%llu}", k++ ? "," : "",
                   rep.type, rep.code, rep.err, rep.score, rep.order_no, (unsigned long long)rep.mask);
        }
    }
    printf("],\"reply_ok\":%s}\n", rc == 0 ? "true" : "false");
    fflush(stdout);
}

static void begin(sg_frame_writer *w, uint8_t *buf, uint32_t ep) {
    sg_frame_hdr h = {.agent_id = agent_id, .seq = ++seq, .epoch = ep};
    sg_frame_begin(w, buf, SG_FRAME_BYTES_MAX, &h);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: udp_probe HOST PORT AGENT STEP...\n");
        return 2;
    }
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    gw.sin_family = AF_INET;
    gw.sin_port = htons((uint16_t)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &gw.sin_addr);
    agent_id = sg_frame_agent_id(argv[3]);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Microseconds: a later run (even within the same second) starts above an earlier one's
     * sequence numbers, which the gateway's replay window remembers. */
    seq = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    if (getenv("UDP_PROBE_WAIT_MS")) wait_ms = atoi(getenv("UDP_PROBE_WAIT_MS"));
    uint8_t buf[SG_FRAME_BYTES_MAX];
    sg_frame_writer w;
    for (int i = 4; i < argc; i++) {
        const char *st = argv[i];
        if (!strcmp(st, "hello")) {
            begin(&w, buf, 0);
            sg_frame_add_hello(&w);
            send_dgram(buf, sg_frame_finish(&w, NULL));
        } else if (!strcmp(st, "check") && i + 1 < argc) {
            begin(&w, buf, epoch);
            char *list = strdup(argv[++i]);
            for (char *save, *pair = strtok_r(list, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
                char bank[64], acct[128];
                if (sscanf(pair, "%63s %127s", bank, acct) == 2) sg_frame_add_check(&w, bank, acct);
            }
            free(list);
            send_dgram(buf, sg_frame_finish(&w, key));
        } else if (!strcmp(st, "stop") && i + 5 < argc) {
            begin(&w, buf, epoch);
            sg_frame_add_stop(&w, argv[i + 1], argv[i + 2], argv[i + 3], argv[i + 4], atoll(argv[i + 5]), NULL);
            i += 5;
            send_dgram(buf, sg_frame_finish(&w, key));
        } else if (!strcmp(st, "stops") && i + 6 < argc) {
            begin(&w, buf, epoch);
            int n = atoi(argv[i + 1]);
            for (int k = 0; k < n; k++) {
                char rid[128], acct[128];
                snprintf(rid, sizeof rid, "%s-%d", argv[i + 2], k);
                snprintf(acct, sizeof acct, "%s%04dX", argv[i + 4], k);
                if (!sg_frame_add_stop(&w, rid, argv[i + 3], acct, argv[i + 5], atoll(argv[i + 6]), NULL)) {
                    fprintf(stderr, "udp_probe: %d STOPs do not fit one datagram\n", n);
                    return 2;
                }
            }
            i += 6;
            send_dgram(buf, sg_frame_finish(&w, key));
        } else if (!strcmp(st, "ping")) {
            begin(&w, buf, epoch);
            sg_frame_add_ping(&w);
            send_dgram(buf, sg_frame_finish(&w, key));
        } else if (!strcmp(st, "replay")) {
            uint8_t copy[SG_FRAME_BYTES_MAX];
            size_t n = last_len;
            memcpy(copy, last, n);
            send_dgram(copy, n);
        } else if (!strcmp(st, "badmac")) {
            begin(&w, buf, epoch);
            sg_frame_add_ping(&w);
            size_t n = sg_frame_finish(&w, key);
            buf[n - 1] ^= 1;
            send_dgram(buf, n);
        } else if (!strcmp(st, "oldepoch")) {
            begin(&w, buf, epoch - 1);
            sg_frame_add_ping(&w);
            send_dgram(buf, sg_frame_finish(&w, key));
        } else if (!strcmp(st, "truncated") && i + 1 < argc) {
            size_t cut = (size_t)atoi(argv[++i]);
            begin(&w, buf, epoch);
            sg_frame_add_ping(&w);
            size_t n = sg_frame_finish(&w, key);
            send_dgram(buf, cut < n ? n - cut : 0);
        } else if (!strcmp(st, "raw") && i + 1 < argc) {
            const char *hex = argv[++i];
            size_t n = strlen(hex) / 2;
            for (size_t k = 0; k < n && k < sizeof buf; k++) sscanf(hex + 2 * k, "%2hhx", &buf[k]);
            send_dgram(buf, n);
        } else {
            fprintf(stderr, "udp_probe: bad step '%s'\n", st);
            return 2;
        }
        recv_print();
    }
    return 0;
}
