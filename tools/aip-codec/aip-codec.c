/* SPDX-License-Identifier: MIT */
/*
 * aip-codec — convert one AIP frame between JSON and protobuf.
 *
 *   aip-codec --from json|proto --to json|proto --envelope client|server [--pretty]
 *             [--max-frame BYTES]
 *
 * Reads one frame on stdin, writes it on stdout. Exit 0 on success; 1 with one line on stderr
 * ("aip-codec: invalid message: <reason>") on bad input; 2 on a usage error. For operators
 * decoding captured frames, and for the tests' round trips.
 */
#include <aip/aip.h>

#include "usage.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG              "aip-codec"
#define DEFAULT_MAX_FRAME (16u << 20) /* like the test server's inbound limit */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aip-codec --from json|proto --to json|proto --envelope client|server\n"
            "                 [--pretty] [--max-frame BYTES]\n"
            "\n"
            "Reads one AIP frame on stdin and writes it on stdout in the other encoding.\n"
            "  --from E        encoding of the input: json (text frame) or proto (binary frame)\n"
            "  --to E          encoding of the output\n"
            "  --envelope K    client (ClientMessage, client -> server) or server (ServerMessage)\n"
            "  --pretty        indent JSON output by 2 spaces (values are kept byte for byte)\n"
            "  --max-frame N   refuse input larger than N bytes (default %u)\n"
            "  --help, --version\n"
            "\n"
            "Exit status: 0 converted; 1 invalid input (reason on stderr); 2 usage error.\n",
            DEFAULT_MAX_FRAME);
}

/* Reads all of stdin, refusing more than max bytes (reads at most max + 1). */
static int read_stdin(aip_buf *b, size_t max, int *too_large)
{
    *too_large = 0;
    for (;;) {
        if (aip_buf_reserve(b, 65536))
            return -1;
        size_t room = b->cap - b->len - 1;
        ssize_t n = read(STDIN_FILENO, b->data + b->len, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 0;
        b->len += (size_t)n;
        if (b->len > max) {
            *too_large = 1;
            return 0;
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"from", required_argument, 0, 'f'},      {"to", required_argument, 0, 't'},
        {"envelope", required_argument, 0, 'e'},  {"pretty", no_argument, 0, 'p'},
        {"max-frame", required_argument, 0, 'm'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {0, 0, 0, 0},
    };
    int have_from = 0, have_to = 0, have_env = 0, pretty = 0;
    aip_encoding from = AIP_ENCODING_JSON, to = AIP_ENCODING_JSON;
    aip_envelope env = AIP_ENVELOPE_CLIENT;
    aip_codec_limits lim;
    aip_codec_limits_default(&lim);
    lim.max_frame = DEFAULT_MAX_FRAME;

    static const char *const encodings[] = {"json", "proto", "protobuf", NULL};
    static const char *const envelopes[] = {"client", "server", NULL};
    int c, ix;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (tool_arg_choice(PROG, "--from", optarg, encodings, &ix))
                return 2;
            from = ix ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON;
            have_from = 1;
            break;
        case 't':
            if (tool_arg_choice(PROG, "--to", optarg, encodings, &ix))
                return 2;
            to = ix ? AIP_ENCODING_PROTO : AIP_ENCODING_JSON;
            have_to = 1;
            break;
        case 'e':
            if (tool_arg_choice(PROG, "--envelope", optarg, envelopes, &ix))
                return 2;
            env = ix ? AIP_ENVELOPE_SERVER : AIP_ENVELOPE_CLIENT;
            have_env = 1;
            break;
        case 'p': pretty = 1; break;
        case 'm': {
            long long v;
            if (tool_arg_int(PROG, "--max-frame", optarg, 1, LLONG_MAX, &v))
                return 2;
            lim.max_frame = (size_t)v;
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V': printf("aip-codec %s\n", aip_version()); return 0;
        default: return tool_option_error(PROG, c, argv, opts);
        }
    }
    if (optind != argc)
        return tool_usage_error(PROG, "%s: unexpected argument (the frame is read on stdin)",
                                argv[optind]);
    if (!have_from || !have_to || !have_env)
        return tool_usage_error(PROG, "%s is required",
                                !have_from ? "--from"
                                : !have_to ? "--to"
                                           : "--envelope");

    aip_buf in;
    aip_buf_init(&in, 0);
    int too_large;
    if (read_stdin(&in, lim.max_frame, &too_large)) {
        fprintf(stderr, "aip-codec: cannot read stdin: %s\n", strerror(errno));
        aip_buf_free(&in);
        return 1;
    }
    if (too_large) {
        fprintf(stderr, "aip-codec: invalid message: frame exceeds the limit of %zu bytes\n",
                lim.max_frame);
        aip_buf_free(&in);
        return 1;
    }

    aip_msg m = {0};
    aip_decode_error err;
    int rc = aip_decode(from, env, in.data ? (const void *)in.data : "", in.len, &lim, &m, &err);
    aip_buf_free(&in);
    if (rc) {
        fprintf(stderr, "aip-codec: invalid message: %s\n", err.reason);
        return 1;
    }
    /* An action the decoder marked invalid cannot be re-encoded: say which and why. */
    for (size_t i = 0; i < m.n_actions; i++) {
        if (m.actions[i].invalid) {
            fprintf(stderr, "aip-codec: invalid message: action %zu: %s\n", i,
                    m.actions[i].invalid);
            aip_msg_clear(&m);
            return 1;
        }
    }

    aip_buf out;
    aip_buf_init(&out, 0);
    char why[200];
    rc = aip_encode_why(to, &m, &out, why, sizeof why);
    aip_msg_clear(&m);
    if (rc) {
        fprintf(stderr, "aip-codec: invalid message: %s\n", why);
        aip_buf_free(&out);
        return 1;
    }
    if (to == AIP_ENCODING_JSON && pretty) {
        aip_buf p;
        aip_buf_init(&p, 0);
        if (aip_json_pretty((const char *)out.data, out.len, 2, &p)) {
            fprintf(stderr, "aip-codec: out of memory\n");
            aip_buf_free(&p);
            aip_buf_free(&out);
            return 1;
        }
        aip_buf_free(&out);
        out = p;
    }
    if (to == AIP_ENCODING_JSON)
        aip_buf_putc(&out, '\n');
    size_t off = 0;
    while (off < out.len) {
        ssize_t n = write(STDOUT_FILENO, out.data + off, out.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "aip-codec: cannot write stdout: %s\n", strerror(errno));
            aip_buf_free(&out);
            return 1;
        }
        off += (size_t)n;
    }
    aip_buf_free(&out);
    return 0;
}
