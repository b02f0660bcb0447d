/* End-to-end test of libsignal_crypto_lib through its C header: two parties establish
 * a session and exchange messages both ways, a group of three talks, removes a member,
 * one party persists to SQLCipher, reopens and continues; then bad input (null,
 * truncated, tampered buffers) must give error codes, never a crash.
 * Run by ffi/tests/run-c-tests.sh, also under valgrind. */
#include "signal_crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(call)                                                                  \
    do {                                                                             \
        SignalErrorCode rc_ = (call);                                                \
        if (rc_ != SIGNAL_OK) {                                                      \
            const char *m_ = signal_last_error_message();                            \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call, \
                    signal_error_code_name(rc_), m_ ? m_ : "?");                     \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define EXPECT_ERR(call, code)                                                        \
    do {                                                                              \
        SignalErrorCode rc_ = (call);                                                 \
        if (rc_ != (code)) {                                                          \
            fprintf(stderr, "%s:%d: %s: expected %s, got %s\n", __FILE__, __LINE__,   \
                    #call, signal_error_code_name(code), signal_error_code_name(rc_)); \
            failures++;                                                               \
        } else if (signal_last_error_message() == NULL) {                             \
            fprintf(stderr, "%s:%d: no last-error message\n", __FILE__, __LINE__);    \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define EXPECT(cond)                                                        \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                     \
        }                                                                   \
    } while (0)

typedef struct {
    const char *name;
    SignalStore *store;
} Party;

static const uint64_t NOW = 1700000000;

/* Encrypts `text` from `from` to `to` (device 1 each) and checks it decrypts. */
static void send_1to1(Party *from, Party *to, const char *text) {
    SignalBuffer ct, pt;
    CHECK(signal_session_encrypt(from->store, to->name, 1, (const uint8_t *)text, strlen(text), &ct));
    CHECK(signal_session_decrypt(to->store, from->name, 1, ct.data, ct.len, &pt));
    EXPECT(pt.len == strlen(text) && memcmp(pt.data, text, pt.len) == 0);
    signal_buffer_free(ct);
    signal_buffer_free(pt);
}

/* `to` fetches `bundle_of`'s bundle and starts a session with it. */
static void start_session(Party *from, Party *to, uint32_t prekey_id) {
    SignalBuffer bundle;
    CHECK(signal_store_generate_prekeys(to->store, prekey_id, prekey_id, prekey_id, NOW, &bundle));
    CHECK(signal_session_process_bundle(from->store, to->name, 1, bundle.data, bundle.len));
    signal_buffer_free(bundle);
}

static Party *find(Party *parties, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(parties[i].name, name) == 0) return &parties[i];
    return NULL;
}

/* Delivers a distribution fan-out from `sender`: each recipient decrypts the 1:1
 * message and records the sender key. Returns the number delivered. */
static size_t deliver(SignalFanOut *fo, Party *sender, Party *parties, size_t n) {
    size_t count = 0;
    CHECK(signal_fanout_count(fo, SIGNAL_FANOUT_MESSAGES, &count));
    for (size_t i = 0; i < count; i++) {
        const char *user;
        uint32_t device, reg;
        const uint8_t *data;
        size_t len;
        SignalBuffer pt;
        CHECK(signal_fanout_address(fo, SIGNAL_FANOUT_MESSAGES, i, &user, &device));
        CHECK(signal_fanout_ciphertext(fo, i, &reg, &data, &len));
        Party *to = find(parties, n, user);
        EXPECT(to != NULL);
        if (!to) continue;
        CHECK(signal_session_decrypt(to->store, sender->name, 1, data, len, &pt));
        CHECK(signal_group_process_distribution(to->store, sender->name, 1, pt.data, pt.len));
        signal_buffer_free(pt);
    }
    signal_fanout_free(fo);
    return count;
}

static void group_send(Party *from, Party **to, size_t n, const uint8_t *gid, const char *text) {
    SignalBuffer ct;
    CHECK(signal_group_encrypt(from->store, gid, SIGNAL_GROUP_ID_LEN, from->name, 1,
                               (const uint8_t *)text, strlen(text), &ct));
    for (size_t i = 0; i < n; i++) {
        SignalBuffer pt;
        CHECK(signal_group_decrypt(to[i]->store, gid, SIGNAL_GROUP_ID_LEN, from->name, 1, ct.data,
                                   ct.len, &pt));
        EXPECT(pt.len == strlen(text) && memcmp(pt.data, text, pt.len) == 0);
        signal_buffer_free(pt);
    }
    signal_buffer_free(ct);
}

static SignalStore *memory_store(uint32_t registration_id) {
    SignalIdentity *id;
    SignalStore *store;
    CHECK(signal_identity_generate(&id));
    CHECK(signal_store_new_in_memory(id, registration_id, &store));
    signal_identity_free(id);
    return store;
}


/* ---- A callback store: the application's own "database" (an array with
 * snapshot transactions), as an app with its own storage would provide. ---- */
typedef struct {
    uint32_t kind;
    uint8_t *key, *value;
    size_t key_len, value_len;
} Entry;

typedef struct {
    Entry *entries, *snapshot;
    size_t n, snapshot_n;
    int in_tx, fail_commit, commits;
} Db;

static Entry *copy_entries(const Entry *src, size_t n) {
    Entry *dst = calloc(n ? n : 1, sizeof *dst);
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[i];
        dst[i].key = malloc(src[i].key_len ? src[i].key_len : 1);
        dst[i].value = malloc(src[i].value_len ? src[i].value_len : 1);
        memcpy(dst[i].key, src[i].key, src[i].key_len);
        memcpy(dst[i].value, src[i].value, src[i].value_len);
    }
    return dst;
}

static void free_entries(Entry *e, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(e[i].key);
        free(e[i].value);
    }
    free(e);
}

static Entry *db_find(Db *db, uint32_t kind, const uint8_t *key, size_t len) {
    for (size_t i = 0; i < db->n; i++)
        if (db->entries[i].kind == kind && db->entries[i].key_len == len && memcmp(db->entries[i].key, key, len) == 0)
            return &db->entries[i];
    return NULL;
}

static int32_t cb_load(void *ctx, uint32_t kind, const uint8_t *key, size_t len, SignalSlot *slot) {
    Entry *e = db_find(ctx, kind, key, len);
    if (!e) return 1;
    return signal_slot_set(slot, e->value, e->value_len) == SIGNAL_OK ? 0 : -1;
}

static int32_t cb_store(void *ctx, uint32_t kind, const uint8_t *key, size_t len, const uint8_t *value, size_t vlen) {
    Db *db = ctx;
    Entry *e = db_find(db, kind, key, len);
    if (!e) {
        db->entries = realloc(db->entries, (db->n + 1) * sizeof *db->entries);
        e = &db->entries[db->n++];
        e->kind = kind;
        e->key_len = len;
        e->key = malloc(len ? len : 1);
        memcpy(e->key, key, len);
    } else {
        free(e->value);
    }
    e->value_len = vlen;
    e->value = malloc(vlen ? vlen : 1);
    memcpy(e->value, value, vlen);
    return 0;
}

/* 0 if a record was deleted, 1 if there was none (a commit consuming a one-time prekey
 * that is already gone then fails with SIGNAL_ERR_CONFLICT). */
static int32_t cb_remove(void *ctx, uint32_t kind, const uint8_t *key, size_t len) {
    Db *db = ctx;
    Entry *e = db_find(db, kind, key, len);
    if (!e) return 1;
    free(e->key);
    free(e->value);
    *e = db->entries[--db->n];
    return 0;
}

static int32_t cb_list(void *ctx, uint32_t kind, SignalSlot *slot) {
    Db *db = ctx;
    for (size_t i = 0; i < db->n; i++)
        if (db->entries[i].kind == kind &&
            signal_slot_push_key(slot, db->entries[i].key, db->entries[i].key_len) != SIGNAL_OK)
            return -1;
    return 0;
}

static int32_t cb_begin(void *ctx) {
    Db *db = ctx;
    if (db->in_tx) return -1;
    db->snapshot = copy_entries(db->entries, db->n);
    db->snapshot_n = db->n;
    db->in_tx = 1;
    return 0;
}

static int32_t cb_commit(void *ctx) {
    Db *db = ctx;
    if (db->fail_commit) return 42;
    free_entries(db->snapshot, db->snapshot_n);
    db->snapshot = NULL;
    db->in_tx = 0;
    db->commits++;
    return 0;
}

static int32_t cb_rollback(void *ctx) {
    Db *db = ctx;
    if (!db->in_tx) return 0;
    free_entries(db->entries, db->n);
    db->entries = db->snapshot;
    db->n = db->snapshot_n;
    db->snapshot = NULL;
    db->in_tx = 0;
    return 0;
}

static void callback_store_flow(Party *alice) {
    Db db = {0};
    SignalStoreCallbacks cbs = {&db, cb_load, cb_store, cb_remove, cb_list, cb_begin, cb_commit, cb_rollback};
    SignalIdentity *id;
    Party dave = {"dave", NULL};
    CHECK(signal_identity_generate(&id));
    SignalStoreCallbacks incomplete = cbs;
    incomplete.commit = NULL;
    EXPECT_ERR(signal_store_new_callbacks(&incomplete, id, 4, &dave.store), SIGNAL_ERR_NULL_POINTER);
    CHECK(signal_store_new_callbacks(&cbs, id, 4, &dave.store));
    signal_identity_free(id);

    start_session(alice, &dave, 1);
    SignalBuffer ct, pt;
    CHECK(signal_session_encrypt(alice->store, "dave", 1, (const uint8_t *)"hi Dave", 7, &ct));
    /* The app's commit fails: an error, and its database is as before. */
    db.fail_commit = 1;
    size_t n_before = db.n;
    EXPECT_ERR(signal_session_decrypt(dave.store, "alice", 1, ct.data, ct.len, &pt), SIGNAL_ERR_STORE);
    EXPECT(db.n == n_before && db.in_tx == 0);
    db.fail_commit = 0;
    CHECK(signal_session_decrypt(dave.store, "alice", 1, ct.data, ct.len, &pt));
    EXPECT(pt.len == 7 && memcmp(pt.data, "hi Dave", 7) == 0);
    signal_buffer_free(ct);
    signal_buffer_free(pt);
    send_1to1(&dave, alice, "hi Alice, Dave here");
    send_1to1(alice, &dave, "second");
    EXPECT(db.commits >= 3);
    signal_store_free(dave.store);
    free_entries(db.entries, db.n);
}

int main(void) {
    EXPECT(signal_abi_version() == SIGNAL_ABI_VERSION);
    EXPECT(strlen(signal_library_version()) > 0);

    char dir[] = "/tmp/signal-ffi-c-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char path[256];
    snprintf(path, sizeof path, "%s/alice.db", dir);
    uint8_t key[32];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)(i * 7 + 1);

    /* Identities: serialize and load back. */
    SignalIdentity *alice_id, *alice_id2;
    SignalBuffer secret, pub1, pub2;
    CHECK(signal_identity_generate(&alice_id));
    CHECK(signal_identity_serialize(alice_id, &secret));
    CHECK(signal_identity_deserialize(secret.data, secret.len, &alice_id2));
    CHECK(signal_identity_public_key(alice_id, &pub1));
    CHECK(signal_identity_public_key(alice_id2, &pub2));
    EXPECT(pub1.len == 33 && pub2.len == 33 && memcmp(pub1.data, pub2.data, 33) == 0);
    signal_buffer_free(secret);
    signal_buffer_free(pub1);
    signal_buffer_free(pub2);
    signal_identity_free(alice_id2);

    Party parties[3] = {{"alice", NULL}, {"bob", NULL}, {"carol", NULL}};
    Party *alice = &parties[0], *bob = &parties[1], *carol = &parties[2];
    CHECK(signal_store_create_sqlcipher(path, key, sizeof key, alice_id, 1, &alice->store));
    signal_identity_free(alice_id);
    bob->store = memory_store(2);
    carol->store = memory_store(3);

    /* 1:1 sessions between every pair, messages both ways. */
    start_session(alice, bob, 1);
    send_1to1(alice, bob, "hello Bob");
    send_1to1(bob, alice, "hi Alice");
    send_1to1(alice, bob, "how are you?");
    start_session(alice, carol, 1);
    send_1to1(alice, carol, "hello Carol");
    send_1to1(carol, alice, "hi Alice");
    start_session(bob, carol, 2);
    send_1to1(bob, carol, "hello Carol, Bob here");
    send_1to1(carol, bob, "hi Bob");

    /* Safety numbers: both sides compute the same digits; scanning matches. */
    {
        SignalBuffer a_pub, b_pub, a_num, b_num, a_scan, b_scan;
        SignalIdentity *a, *b;
        uint8_t match = 0;
        CHECK(signal_store_local_identity(alice->store, &a));
        CHECK(signal_store_local_identity(bob->store, &b));
        CHECK(signal_identity_public_key(a, &a_pub));
        CHECK(signal_identity_public_key(b, &b_pub));
        SignalBuffer b_recorded;
        CHECK(signal_store_remote_identity(alice->store, "bob", 1, &b_recorded));
        EXPECT(b_recorded.len == b_pub.len && memcmp(b_recorded.data, b_pub.data, b_pub.len) == 0);
        CHECK(signal_safety_number("alice", a_pub.data, a_pub.len, "bob", b_recorded.data, b_recorded.len, &a_num, &a_scan));
        CHECK(signal_safety_number("bob", b_pub.data, b_pub.len, "alice", a_pub.data, a_pub.len, &b_num, &b_scan));
        EXPECT(a_num.len == SIGNAL_SAFETY_NUMBER_DIGITS && a_num.len == b_num.len &&
               memcmp(a_num.data, b_num.data, a_num.len) == 0);
        EXPECT(a_scan.len == SIGNAL_SAFETY_NUMBER_SCANNABLE_LEN);
        CHECK(signal_safety_number_verify_scanned("alice", a_pub.data, a_pub.len, "bob", b_pub.data, b_pub.len, b_scan.data, b_scan.len, &match));
        EXPECT(match == 1);
        CHECK(signal_safety_number_verify_scanned("alice", a_pub.data, a_pub.len, "bob", b_pub.data, b_pub.len, a_scan.data, a_scan.len, &match));
        EXPECT(match == 0);
        EXPECT_ERR(signal_store_remote_identity(alice->store, "dave", 1, &b_recorded), SIGNAL_ERR_NOT_FOUND);
        signal_buffer_free(a_pub);
        signal_buffer_free(b_pub);
        signal_buffer_free(b_recorded);
        signal_buffer_free(a_num);
        signal_buffer_free(b_num);
        signal_buffer_free(a_scan);
        signal_buffer_free(b_scan);
        signal_identity_free(a);
        signal_identity_free(b);
    }

    /* A group of three: everyone distributes their chain to the other two. */
    uint8_t gid[SIGNAL_GROUP_ID_LEN];
    CHECK(signal_group_id_generate(gid, sizeof gid));
    SignalDevice members[3] = {{"alice", 1, 1}, {"bob", 1, 2}, {"carol", 1, 3}};
    for (int i = 0; i < 3; i++) {
        SignalFanOut *fo;
        CHECK(signal_group_distribute(parties[i].store, gid, sizeof gid, parties[i].name, 1, members, 3, &fo));
        EXPECT(deliver(fo, &parties[i], parties, 3) == 2);
    }
    Party *to_bc[2] = {bob, carol}, *to_ac[2] = {alice, carol}, *to_ab[2] = {alice, bob};
    group_send(alice, to_bc, 2, gid, "hello group");
    group_send(bob, to_ac, 2, gid, "hello from Bob");
    group_send(carol, to_ab, 2, gid, "hello from Carol");

    /* Alice persists: close, reopen (wrong key refused), continue. */
    signal_store_free(alice->store);
    alice->store = NULL;
    {
        uint8_t wrong[32];
        memcpy(wrong, key, 32);
        wrong[0] ^= 1;
        SignalStore *s = NULL;
        EXPECT_ERR(signal_store_open_sqlcipher(path, wrong, 32, &s), SIGNAL_ERR_WRONG_KEY);
        EXPECT(s == NULL);
    }
    CHECK(signal_store_open_sqlcipher(path, key, sizeof key, &alice->store));
    send_1to1(alice, bob, "after reopening");
    send_1to1(bob, alice, "welcome back");
    send_1to1(carol, alice, "still here");
    group_send(alice, to_bc, 2, gid, "group after reopening");
    group_send(bob, to_ac, 2, gid, "Bob to the group");

    /* Remove Carol: Alice and Bob rotate and redistribute to each other only. */
    {
        SignalDevice remaining[2] = {{"alice", 1, 1}, {"bob", 1, 2}};
        SignalFanOut *fo;
        CHECK(signal_group_remove_member(alice->store, gid, sizeof gid, "alice", 1, "carol", remaining, 2, &fo));
        EXPECT(deliver(fo, alice, parties, 2) == 1);
        CHECK(signal_group_remove_member(bob->store, gid, sizeof gid, "bob", 1, "carol", remaining, 2, &fo));
        EXPECT(deliver(fo, bob, parties, 2) == 1);
        Party *to_b[1] = {bob};
        group_send(alice, to_b, 1, gid, "without Carol");
        SignalBuffer ct, pt;
        CHECK(signal_group_encrypt(alice->store, gid, sizeof gid, "alice", 1, (const uint8_t *)"secret", 6, &ct));
        EXPECT_ERR(signal_group_decrypt(carol->store, gid, sizeof gid, "alice", 1, ct.data, ct.len, &pt), SIGNAL_ERR_NO_SENDER_KEY);
        /* A group message from Carol is no longer accepted by Alice. */
        SignalBuffer cct;
        CHECK(signal_group_encrypt(carol->store, gid, sizeof gid, "carol", 1, (const uint8_t *)"hi?", 3, &cct));
        EXPECT_ERR(signal_group_decrypt(alice->store, gid, sizeof gid, "carol", 1, cct.data, cct.len, &pt), SIGNAL_ERR_NO_SENDER_KEY);
        signal_buffer_free(ct);
        signal_buffer_free(cct);
    }

    /* Multi-device fan-out: Alice to Bob's device 1 and a new device 2. */
    {
        SignalStore *bob2 = memory_store(22);
        Party bob2p = {"bob", bob2};
        SignalBuffer bundle;
        CHECK(signal_store_generate_prekeys(bob2, 5, 5, 5, NOW, &bundle));
        SignalDevice bobs[2] = {{"bob", 1, 2}, {"bob", 2, 22}};
        SignalFanOut *fo;
        size_t n = 0;
        const char *user;
        uint32_t device, reg;
        const uint8_t *data;
        size_t len;
        CHECK(signal_fanout_encrypt(alice->store, "alice", 1, bobs, 2, (const uint8_t *)"to all", 6, &fo));
        CHECK(signal_fanout_count(fo, SIGNAL_FANOUT_MESSAGES, &n));
        EXPECT(n == 1);
        CHECK(signal_fanout_count(fo, SIGNAL_FANOUT_MISSING, &n));
        EXPECT(n == 1);
        CHECK(signal_fanout_address(fo, SIGNAL_FANOUT_MISSING, 0, &user, &device));
        EXPECT(strcmp(user, "bob") == 0 && device == 2);
        EXPECT_ERR(signal_fanout_address(fo, SIGNAL_FANOUT_MISSING, 1, &user, &device), SIGNAL_ERR_INVALID_ARGUMENT);
        EXPECT_ERR(signal_fanout_count(fo, 99, &n), SIGNAL_ERR_INVALID_ARGUMENT);
        signal_fanout_free(fo);
        CHECK(signal_session_process_bundle(alice->store, "bob", 2, bundle.data, bundle.len));
        signal_buffer_free(bundle);
        CHECK(signal_fanout_encrypt(alice->store, "alice", 1, bobs, 2, (const uint8_t *)"to all", 6, &fo));
        CHECK(signal_fanout_count(fo, SIGNAL_FANOUT_MESSAGES, &n));
        EXPECT(n == 2);
        for (size_t i = 0; i < n; i++) {
            SignalBuffer pt;
            CHECK(signal_fanout_address(fo, SIGNAL_FANOUT_MESSAGES, i, &user, &device));
            CHECK(signal_fanout_ciphertext(fo, i, &reg, &data, &len));
            SignalStore *target = device == 1 ? bob->store : bob2p.store;
            EXPECT(reg == (device == 1 ? 2u : 22u));
            CHECK(signal_session_decrypt(target, "alice", 1, data, len, &pt));
            EXPECT(pt.len == 6 && memcmp(pt.data, "to all", 6) == 0);
            signal_buffer_free(pt);
        }
        signal_fanout_free(fo);
        signal_store_free(bob2);
    }

    callback_store_flow(alice);

    /* Key maintenance: the first run creates current keys and one-time batches. */
    {
        SignalMaintenanceReport r;
        CHECK(signal_store_run_maintenance(alice->store, NOW, 0, 0, &r));
        EXPECT(r.new_signed_prekey == 1 && r.new_last_resort_kem_prekey == 1);
        EXPECT(r.new_one_time_prekeys == 100 && r.new_kem_one_time_prekeys == 100);
        CHECK(signal_store_run_maintenance(alice->store, NOW, 100, 100, &r));
        EXPECT(r.new_signed_prekey == 0 && r.new_one_time_prekeys == 0);
        /* The current (last-resort) bundle: a new peer starts a session with it. */
        SignalBuffer current;
        EXPECT_ERR(signal_store_current_bundle(bob->store, &current), SIGNAL_ERR_NOT_FOUND);
        CHECK(signal_store_current_bundle(alice->store, &current));
        Party erin = {"erin", memory_store(5)};
        CHECK(signal_session_process_bundle(erin.store, "alice", 1, current.data, current.len));
        signal_buffer_free(current);
        send_1to1(&erin, alice, "hello via the last-resort prekey");
        send_1to1(alice, &erin, "hello Erin");
        signal_store_free(erin.store);
    }

    /* Bad input: error codes, never a crash, nothing changed. */
    {
        SignalBuffer ct, pt, buf;
        SignalStore *s = NULL;
        SignalIdentity *id = NULL;
        SignalFanOut *fo = NULL;
        uint32_t u32;
        CHECK(signal_session_encrypt(alice->store, "bob", 1, (const uint8_t *)"payload", 7, &ct));
        EXPECT_ERR(signal_session_encrypt(NULL, "bob", 1, (const uint8_t *)"x", 1, &buf), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_session_encrypt(alice->store, NULL, 1, (const uint8_t *)"x", 1, &buf), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_session_encrypt(alice->store, "bob", 1, NULL, 1, &buf), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_session_encrypt(alice->store, "bob", 1, (const uint8_t *)"x", 1, NULL), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_session_encrypt(alice->store, "", 1, (const uint8_t *)"x", 1, &buf), SIGNAL_ERR_INVALID_ARGUMENT);
        EXPECT_ERR(signal_session_encrypt(alice->store, "zed", 1, (const uint8_t *)"x", 1, &buf), SIGNAL_ERR_NO_SESSION);
        EXPECT_ERR(signal_session_decrypt(bob->store, "alice", 1, NULL, 0, &pt), SIGNAL_ERR_DECODE);
        for (size_t cut = 0; cut < ct.len; cut += 7) {
            /* A cut inside the framing is a decode error; one that leaves a
             * well-formed but shorter body fails authentication. */
            SignalErrorCode trc = signal_session_decrypt(bob->store, "alice", 1, ct.data, cut, &pt);
            EXPECT(trc == SIGNAL_ERR_DECODE || trc == SIGNAL_ERR_INVALID_MESSAGE);
        }
        ct.data[ct.len - 1] ^= 0x01; /* tamper with the MAC */
        EXPECT_ERR(signal_session_decrypt(bob->store, "alice", 1, ct.data, ct.len, &pt), SIGNAL_ERR_INVALID_MESSAGE);
        ct.data[ct.len - 1] ^= 0x01;
        ct.data[ct.len - 12] ^= 0x80; /* tamper with the encrypted body */
        EXPECT_ERR(signal_session_decrypt(bob->store, "alice", 1, ct.data, ct.len, &pt), SIGNAL_ERR_INVALID_MESSAGE);
        ct.data[ct.len - 12] ^= 0x80;
        for (size_t i = 0; i < ct.len; i += 5) { /* any flipped byte is refused */
            ct.data[i] ^= 0x01;
            SignalErrorCode rc = signal_session_decrypt(bob->store, "alice", 1, ct.data, ct.len, &pt);
            EXPECT(rc != SIGNAL_OK);
            if (rc == SIGNAL_OK) signal_buffer_free(pt);
            ct.data[i] ^= 0x01;
        }
        CHECK(signal_session_decrypt(bob->store, "alice", 1, ct.data, ct.len, &pt)); /* untouched */
        EXPECT(pt.len == 7 && memcmp(pt.data, "payload", 7) == 0);
        EXPECT_ERR(signal_session_decrypt(bob->store, "alice", 1, ct.data, ct.len, &buf), SIGNAL_ERR_DUPLICATE_MESSAGE);
        signal_buffer_free(pt);
        signal_buffer_free(ct);

        EXPECT_ERR(signal_store_open_sqlcipher(path, key, 31, &s), SIGNAL_ERR_INVALID_ARGUMENT);
        EXPECT_ERR(signal_store_open_sqlcipher(path, NULL, 32, &s), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_store_open_sqlcipher(NULL, key, 32, &s), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_store_open_sqlcipher("/nonexistent/x.db", key, 32, &s), SIGNAL_ERR_STORE);
        EXPECT_ERR(signal_identity_deserialize((const uint8_t *)"junk", 4, &id), SIGNAL_ERR_DECODE);
        EXPECT_ERR(signal_identity_generate(NULL), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_store_registration_id(NULL, &u32), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_session_process_bundle(alice->store, "eve", 1, (const uint8_t *)"junk", 4), SIGNAL_ERR_DECODE);
        SignalBuffer bundle;
        CHECK(signal_store_generate_prekeys(carol->store, 9, 9, 9, NOW, &bundle));
        EXPECT_ERR(signal_session_process_bundle(alice->store, "eve", 1, bundle.data, bundle.len - 1), SIGNAL_ERR_DECODE);
        bundle.data[bundle.len - 1] ^= 0x01; /* break the KEM prekey signature */
        EXPECT_ERR(signal_session_process_bundle(alice->store, "eve", 1, bundle.data, bundle.len), SIGNAL_ERR_BAD_SIGNATURE);
        bundle.data[bundle.len - 1] ^= 0x01;
        /* Carol's bundle presented as Bob's: Bob's recorded identity differs. */
        EXPECT_ERR(signal_session_process_bundle(alice->store, "bob", 1, bundle.data, bundle.len), SIGNAL_ERR_UNTRUSTED_IDENTITY);
        signal_buffer_free(bundle);
        EXPECT_ERR(signal_group_encrypt(alice->store, gid, 31, "alice", 1, (const uint8_t *)"x", 1, &buf), SIGNAL_ERR_INVALID_ARGUMENT);
        EXPECT_ERR(signal_group_decrypt(bob->store, gid, sizeof gid, "alice", 1, (const uint8_t *)"junk", 4, &buf), SIGNAL_ERR_DECODE);
        SignalBuffer gct;
        CHECK(signal_group_encrypt(alice->store, gid, sizeof gid, "alice", 1, (const uint8_t *)"group", 5, &gct));
        gct.data[gct.len - 1] ^= 0x01; /* signature */
        EXPECT_ERR(signal_group_decrypt(bob->store, gid, sizeof gid, "alice", 1, gct.data, gct.len, &buf), SIGNAL_ERR_BAD_SIGNATURE);
        EXPECT_ERR(signal_group_decrypt(bob->store, gid, sizeof gid, "alice", 1, gct.data, gct.len / 2, &buf), SIGNAL_ERR_DECODE);
        gct.data[gct.len - 1] ^= 0x01;
        CHECK(signal_group_decrypt(bob->store, gid, sizeof gid, "alice", 1, gct.data, gct.len, &buf));
        signal_buffer_free(buf);
        EXPECT_ERR(signal_group_decrypt(bob->store, gid, sizeof gid, "alice", 1, gct.data, gct.len, &buf), SIGNAL_ERR_DUPLICATE_MESSAGE);
        signal_buffer_free(gct);
        EXPECT_ERR(signal_group_process_distribution(bob->store, "alice", 1, (const uint8_t *)"junk", 4), SIGNAL_ERR_DECODE);
        EXPECT_ERR(signal_group_distribute(alice->store, gid, sizeof gid, "alice", 1, NULL, 2, &fo), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_group_id_generate(NULL, 32), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_safety_number("a", NULL, 33, "b", NULL, 33, &buf, NULL), SIGNAL_ERR_NULL_POINTER);
        EXPECT_ERR(signal_safety_number("a", (const uint8_t *)"short", 5, "b", (const uint8_t *)"short", 5, &buf, NULL), SIGNAL_ERR_DECODE);
        size_t n2;
        EXPECT_ERR(signal_fanout_count(NULL, SIGNAL_FANOUT_MESSAGES, &n2), SIGNAL_ERR_NULL_POINTER);
        /* Freeing null handles and empty buffers is a no-op. */
        signal_store_free(NULL);
        signal_identity_free(NULL);
        signal_fanout_free(NULL);
        SignalBuffer empty = {NULL, 0};
        signal_buffer_free(empty);
        EXPECT(s == NULL && id == NULL && fo == NULL);
    }

    for (int i = 0; i < 3; i++) signal_store_free(parties[i].store);
    unlink(path);
    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    unlink(wal);
    rmdir(dir);

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("C client: all checks passed\n");
    return 0;
}
