#include "auth.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

int auth_init(void) { return sodium_init() < 0 ? -1 : 0; }

static int derive(uint8_t key[AUTH_KEY_BYTES], const char *secret, size_t len, const uint8_t *salt,
                  uint64_t ops, uint64_t mem) {
    return crypto_pwhash(key, AUTH_KEY_BYTES, secret, len, salt, ops, (size_t)mem, crypto_pwhash_ALG_ARGON2ID13);
}

int auth_hash_secret(const char *secret, size_t len, char *out, size_t cap) {
    if (len == 0 || len > AUTH_SECRET_LEN_MAX) return -1;
    uint8_t salt[AUTH_SALT_BYTES], key[AUTH_KEY_BYTES];
    randombytes_buf(salt, sizeof salt);
    uint64_t ops = crypto_pwhash_OPSLIMIT_INTERACTIVE, mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    if (derive(key, secret, len, salt, ops, mem) != 0) return -1;
    char s64[64], k64[64];
    sodium_bin2base64(s64, sizeof s64, salt, sizeof salt, B64);
    sodium_bin2base64(k64, sizeof k64, key, sizeof key, B64);
    sodium_memzero(key, sizeof key);
    int n = snprintf(out, cap, "sg1$argon2id$%llu$%llu$%s$%s", (unsigned long long)ops, (unsigned long long)mem, s64, k64);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

int auth_parse(const char *stored, auth_hash *h) {
    memset(h, 0, sizeof *h);
    unsigned long long ops, mem;
    char s64[64], k64[64];
    if (sscanf(stored, "sg1$argon2id$%llu$%llu$%63[^$]$%63s", &ops, &mem, s64, k64) != 4) return -1;
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > crypto_pwhash_OPSLIMIT_MAX || mem < crypto_pwhash_MEMLIMIT_MIN ||
        mem > (1ULL << 32))
        return -1;
    size_t n;
    if (sodium_base642bin(h->salt, sizeof h->salt, s64, strlen(s64), NULL, &n, NULL, B64) != 0 || n != AUTH_SALT_BYTES)
        return -1;
    if (sodium_base642bin(h->key, sizeof h->key, k64, strlen(k64), NULL, &n, NULL, B64) != 0 || n != AUTH_KEY_BYTES)
        return -1;
    h->opslimit = ops;
    h->memlimit = mem;
    return 0;
}

bool auth_cache_hit(const auth_hash *h, const char *secret, size_t len) {
    if (len == 0 || len > AUTH_SECRET_LEN_MAX) return false;
    uint8_t d[32];
    crypto_generichash(d, sizeof d, (const uint8_t *)secret, len, h->key, sizeof h->key);
    return h->cached && sodium_memcmp(d, h->cache, sizeof d) == 0;
}

bool auth_kdf_matches(const auth_hash *h, const char *secret, size_t len) {
    if (len == 0 || len > AUTH_SECRET_LEN_MAX) return false;
    uint8_t key[AUTH_KEY_BYTES];
    if (derive(key, secret, len, h->salt, h->opslimit, h->memlimit) != 0) return false;
    bool ok = sodium_memcmp(key, h->key, sizeof key) == 0;
    sodium_memzero(key, sizeof key);
    return ok;
}

void auth_remember(auth_hash *h, const char *secret, size_t len) {
    crypto_generichash(h->cache, sizeof h->cache, (const uint8_t *)secret, len, h->key, sizeof h->key);
    h->cached = true;
}

bool auth_verify(auth_hash *h, const char *secret, size_t len) {
    if (auth_cache_hit(h, secret, len)) return true;
    if (!auth_kdf_matches(h, secret, len)) return false;
    auth_remember(h, secret, len);
    return true;
}

void auth_pepper(const auth_hash *agents, uint32_t n, uint8_t pepper[AUTH_KEY_BYTES]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, AUTH_KEY_BYTES);
    static const char tag[] = "stopgate-auth-pepper-v1";
    crypto_generichash_update(&st, (const uint8_t *)tag, sizeof tag - 1);
    for (uint32_t i = 0; i < n; i++) crypto_generichash_update(&st, agents[i].key, sizeof agents[i].key);
    crypto_generichash_final(&st, pepper, AUTH_KEY_BYTES);
}

/* BLAKE2b(key = pepper, tag | name) into out. */
static void pepper_mix(const uint8_t pepper[AUTH_KEY_BYTES], char tag, const char *name, size_t len, uint8_t *out,
                       size_t outlen) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, pepper, AUTH_KEY_BYTES, outlen);
    crypto_generichash_update(&st, (const uint8_t *)&tag, 1);
    crypto_generichash_update(&st, (const uint8_t *)name, len);
    crypto_generichash_final(&st, out, outlen);
}

void auth_fake_hash(const uint8_t pepper[AUTH_KEY_BYTES], const char *name, size_t len, auth_hash *out) {
    memset(out, 0, sizeof *out);
    out->opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    out->memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    pepper_mix(pepper, 's', name, len, out->salt, sizeof out->salt);
    pepper_mix(pepper, 'k', name, len, out->key, sizeof out->key);
}

void auth_fake_udp_hash(const uint8_t pepper[AUTH_KEY_BYTES], uint32_t agent_id, auth_hash *out) {
    char id[16];
    int n = snprintf(id, sizeof id, "#%08x", agent_id);
    auth_fake_hash(pepper, id, (size_t)n, out);
}

void auth_random_secret(char *out, size_t len) {
    static const char alphabet[] = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    if (len == 0) return; /* no room even for the NUL: out[len - 1] would be out[-1] */
    for (size_t i = 0; i + 1 < len; i++) out[i] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
    out[len - 1] = 0;
}
