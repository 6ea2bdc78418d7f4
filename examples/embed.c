/* SPDX-License-Identifier: MIT */
/*
 * Embedding libaip: the smallest useful program, built against the installed library:
 *   cc embed.c $(pkg-config --cflags --libs aip) -o embed
 *
 *   embed                     prints the library version and round-trips a message through
 *                             both encodings (no server needed)
 *   embed URL DEVICE          asks an AIP server for DEVICE's system info, as a constellation
 */
#include <aip/aip.h>

#include <stdio.h>
#include <string.h>

static int offline(void)
{
    aip_msg m;
    aip_msg_init(&m, AIP_ENVELOPE_CLIENT, AIP_MSG_HEARTBEAT, AIP_STATUS_OK);
    aip_msg_set_str(&m.client_id, "embed-example");
    aip_msg_set_json(&m.metadata, "{\"ratio\":32.0}", AIP_JSON_OBJECT);
    aip_buf json, proto;
    aip_buf_init(&json, 0);
    aip_buf_init(&proto, 0);
    int rc = aip_encode(AIP_ENCODING_JSON, &m, &json);
    if (!rc)
        rc = aip_encode(AIP_ENCODING_PROTO, &m, &proto);
    aip_msg back = {0};
    aip_decode_error err;
    if (!rc)
        rc = aip_decode(AIP_ENCODING_PROTO, AIP_ENVELOPE_CLIENT, proto.data, proto.len, NULL, &back,
                        &err);
    int same = !rc && aip_msg_equal(&m, &back);
    printf("libaip %s: %.*s (%zu bytes as JSON, %zu as protobuf, round trip %s)\n", aip_version(),
           (int)json.len, (const char *)json.data, json.len, proto.len, same ? "ok" : "FAILED");
    aip_msg_clear(&m);
    aip_msg_clear(&back);
    aip_buf_free(&json);
    aip_buf_free(&proto);
    return same ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 1)
        return offline();
    if (argc != 3) {
        fprintf(stderr, "usage: embed [URL DEVICE]\n");
        return 2;
    }
    aip_conn_config cfg;
    aip_conn_config_init(&cfg);
    cfg.url = argv[1];
    cfg.client_id = "embed-example";
    cfg.client_type = AIP_CLIENT_CONSTELLATION;
    cfg.target_id = argv[2];
    aip_conn *c;
    int rc = aip_conn_create(&cfg, &c);
    if (rc) {
        fprintf(stderr, "embed: %s\n", aip_strerror(rc));
        return 1;
    }
    aip_future *f = NULL;
    rc = aip_conn_wait_registered(c, 10000);
    if (!rc)
        rc = aip_conn_request_device_info(c, NULL, NULL, &f);
    if (!rc)
        rc = aip_future_wait(f, AIP_TIMEOUT_INFINITE);
    if (!rc)
        printf("%s\n", aip_future_msg(f)->result);
    else
        fprintf(stderr, "embed: %s%s%s\n", aip_strerror(rc), f && aip_future_error(f) ? ": " : "",
                f && aip_future_error(f) ? aip_future_error(f) : "");
    aip_future_release(f);
    aip_conn_destroy(c);
    return rc ? 1 : 0;
}
