/*
 * auth: agent secrets (SPEC §4.2, §4.3). A secret is stored only as
 *   sg1$argon2id$<opslimit>$<memlimit_bytes>$<salt, base64>$<key, base64>
 * where key = Argon2id(secret, salt). The same key later authenticates UDP frames, so the
 * config needs nothing else. Verifying derives the key again (slow on purpose) and compares
 * in constant time; a successful secret is remembered as a keyed BLAKE2b digest so repeat
 * AUTHs of the same agent cost microseconds, while wrong guesses keep paying the full price.
 */
#ifndef SG_AUTH_H
#define SG_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_BYTES 32
#define AUTH_SALT_BYTES 16
#define AUTH_SECRET_LEN_MAX 256

typedef struct auth_hash {
    uint64_t opslimit;
    uint64_t memlimit;
    uint8_t salt[AUTH_SALT_BYTES];
    uint8_t key[AUTH_KEY_BYTES];
    bool cached;
    uint8_t cache[32]; /* BLAKE2b(key = key, secret) of the last secret that verified */
} auth_hash;

int auth_init(void); /* sodium_init; 0 or -1 */
/* Hash a secret into out (>= 200 bytes). 0 or -1. */
int auth_hash_secret(const char *secret, size_t len, char *out, size_t cap);
/* Parse a stored hash. 0 or -1. */
int auth_parse(const char *stored, auth_hash *h);
/* Constant-time check of a secret. true when it matches. */
bool auth_verify(auth_hash *h, const char *secret, size_t len);
/* The two halves of auth_verify, for a caller that runs the KDF on another thread:
 * auth_cache_hit (microseconds, reads h) on the owner's thread; auth_kdf_matches (the slow
 * Argon2id, reads only its own copy of h: thread-safe); auth_remember after a success. */
bool auth_cache_hit(const auth_hash *h, const char *secret, size_t len);
bool auth_kdf_matches(const auth_hash *h, const char *secret, size_t len);
void auth_remember(auth_hash *h, const char *secret, size_t len);
/* A server secret for fake_hash/fake_salt, derived from every configured agent's key: stable
 * across restarts while the agents stay the same, and unknown to anybody who has not read the
 * config. */
void auth_pepper(const auth_hash *agents, uint32_t n, uint8_t pepper[AUTH_KEY_BYTES]);
/* The hash an unknown agent name is checked against, so that it costs the same Argon2id work
 * as a known one (no enumeration by timing): the default parameters of auth_hash_secret, a
 * salt and a key derived from the pepper and the name. Deterministic; never verifies in
 * practice (and callers refuse a fake whatever the KDF says). */
void auth_fake_hash(const uint8_t pepper[AUTH_KEY_BYTES], const char *name, size_t len, auth_hash *out);
/* The same for a UDP HELLO naming an agent id nobody has: the salt and limits to answer with
 * (kernel UDP and DPDK alike). '#' is in no agent name, so these never equal a TCP fake. */
void auth_fake_udp_hash(const uint8_t pepper[AUTH_KEY_BYTES], uint32_t agent_id, auth_hash *out);
/* Random printable secret for the development agent. */
void auth_random_secret(char *out, size_t len);
#endif
