// The bulk insert function of the store: one call runs a prepared INSERT
// for every row packed in a blob, so that a batch of events crosses from Go
// to C once instead of once per column and row. See bulk.go for the
// packing and why.
//
// The SQLite linked into the program is the one go-sqlite3 compiles; this
// file declares the few stable C API functions it calls rather than
// including a header from outside the repository.

#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
typedef struct sqlite3_context sqlite3_context;
typedef struct sqlite3_value sqlite3_value;
typedef struct sqlite3_api_routines sqlite3_api_routines;

int sqlite3_auto_extension(void (*entry)(void));
int sqlite3_create_function_v2(sqlite3 *, const char *, int, int, void *,
	void (*)(sqlite3_context *, int, sqlite3_value **),
	void (*)(sqlite3_context *, int, sqlite3_value **),
	void (*)(sqlite3_context *), void (*)(void *));
sqlite3 *sqlite3_context_db_handle(sqlite3_context *);
int sqlite3_value_type(sqlite3_value *);
const unsigned char *sqlite3_value_text(sqlite3_value *);
const void *sqlite3_value_blob(sqlite3_value *);
int sqlite3_value_bytes(sqlite3_value *);
long long sqlite3_value_int64(sqlite3_value *);
int sqlite3_prepare_v2(sqlite3 *, const char *, int, sqlite3_stmt **, const char **);
int sqlite3_bind_parameter_count(sqlite3_stmt *);
int sqlite3_bind_int64(sqlite3_stmt *, int, long long);
int sqlite3_bind_double(sqlite3_stmt *, int, double);
int sqlite3_bind_text(sqlite3_stmt *, int, const char *, int, void (*)(void *));
int sqlite3_step(sqlite3_stmt *);
int sqlite3_reset(sqlite3_stmt *);
int sqlite3_finalize(sqlite3_stmt *);
const char *sqlite3_errmsg(sqlite3 *);
int sqlite3_extended_errcode(sqlite3 *);
void sqlite3_result_error(sqlite3_context *, const char *, int);
void sqlite3_result_error_code(sqlite3_context *, int);
void sqlite3_result_int64(sqlite3_context *, long long);

#define TS_SQLITE_OK 0
#define TS_SQLITE_ERROR 1
#define TS_SQLITE_ROW 100
#define TS_SQLITE_DONE 101
#define TS_SQLITE_INTEGER 1
#define TS_SQLITE_TEXT 3
#define TS_SQLITE_BLOB 4
#define TS_SQLITE_UTF8 1
#define TS_SQLITE_DIRECTONLY 0x000080000

// Value tags of the packed rows; bulk.go writes the same.
enum { TAG_INT = 'i', TAG_FLOAT = 'f', TAG_TEXT = 't' };

static int64_t le64(const unsigned char *p) {
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
	return (int64_t)v;
}

static uint32_t le32(const unsigned char *p) {
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void fail(sqlite3_context *ctx, int code, const char *msg) {
	sqlite3_result_error(ctx, msg, -1);
	sqlite3_result_error_code(ctx, code);
}

// bind_row binds one row's ncols values starting at *pos; it returns 0, or
// -1 with msg filled when the blob ends early or holds an unknown tag, or
// the SQLite code of a failed bind.
static int bind_row(sqlite3_stmt *st, int ncols, const unsigned char *b, int n,
	int *pos, char *msg, size_t msgsize) {
	int p = *pos;
	for (int c = 1; c <= ncols; c++) {
		if (p >= n) {
			snprintf(msg, msgsize, "packed rows end inside a row");
			return -1;
		}
		int rc;
		unsigned char tag = b[p++];
		switch (tag) {
		case TAG_INT:
		case TAG_FLOAT:
			if (n - p < 8) {
				snprintf(msg, msgsize, "packed rows end inside a number");
				return -1;
			}
			if (tag == TAG_INT) {
				rc = sqlite3_bind_int64(st, c, le64(b + p));
			} else {
				int64_t bits = le64(b + p);
				double d;
				memcpy(&d, &bits, sizeof d);
				rc = sqlite3_bind_double(st, c, d);
			}
			p += 8;
			break;
		case TAG_TEXT: {
			if (n - p < 4) {
				snprintf(msg, msgsize, "packed rows end inside a text length");
				return -1;
			}
			uint32_t len = le32(b + p);
			p += 4;
			if ((uint32_t)(n - p) < len) {
				snprintf(msg, msgsize, "packed rows end inside a text");
				return -1;
			}
			// The blob outlives the statement's use of the text.
			rc = sqlite3_bind_text(st, c, (const char *)b + p, (int)len, (void (*)(void *))0);
			p += (int)len;
			break;
		}
		default:
			snprintf(msg, msgsize, "unknown value tag %d in packed rows", tag);
			return -1;
		}
		if (rc != TS_SQLITE_OK) return rc;
	}
	*pos = p;
	return 0;
}

// tetrascope_insert_rows(sql, ncols, rows) prepares sql, which must take
// ncols parameters, runs it once per row of ncols values packed in the
// blob rows, and returns the number of rows. A failure stops at that row
// with SQLite's code and message; the caller's transaction decides what
// is kept.
static void insert_rows(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
	(void)argc;
	char msg[512];
	if (sqlite3_value_type(argv[0]) != TS_SQLITE_TEXT ||
		sqlite3_value_type(argv[1]) != TS_SQLITE_INTEGER ||
		(sqlite3_value_type(argv[2]) != TS_SQLITE_BLOB && sqlite3_value_bytes(argv[2]) != 0)) {
		fail(ctx, TS_SQLITE_ERROR, "tetrascope_insert_rows takes (text, integer, blob)");
		return;
	}
	const char *sql = (const char *)sqlite3_value_text(argv[0]);
	long long ncols = sqlite3_value_int64(argv[1]);
	const unsigned char *b = sqlite3_value_blob(argv[2]);
	int n = sqlite3_value_bytes(argv[2]);

	sqlite3 *db = sqlite3_context_db_handle(ctx);
	sqlite3_stmt *st = 0;
	if (sqlite3_prepare_v2(db, sql, -1, &st, 0) != TS_SQLITE_OK || st == 0) {
		snprintf(msg, sizeof msg, "preparing the insert: %s", sqlite3_errmsg(db));
		fail(ctx, TS_SQLITE_ERROR, msg);
		sqlite3_finalize(st);
		return;
	}
	if (ncols < 1 || ncols != sqlite3_bind_parameter_count(st)) {
		snprintf(msg, sizeof msg, "the insert takes %d values, not %lld",
			sqlite3_bind_parameter_count(st), ncols);
		fail(ctx, TS_SQLITE_ERROR, msg);
		sqlite3_finalize(st);
		return;
	}

	long long rows = 0;
	int pos = 0;
	while (pos < n) {
		int rc = bind_row(st, (int)ncols, b, n, &pos, msg, sizeof msg);
		if (rc == 0) {
			rc = sqlite3_step(st);
			if (rc == TS_SQLITE_DONE) {
				rc = TS_SQLITE_OK;
			} else if (rc == TS_SQLITE_ROW) {
				snprintf(msg, sizeof msg, "the statement returns rows");
				rc = -1;
			}
		}
		if (rc > 0) {
			// The extended code, so that the caller can tell, say, a
			// moved file from another I/O error.
			snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(db));
			rc = sqlite3_extended_errcode(db);
		}
		sqlite3_reset(st);
		if (rc != TS_SQLITE_OK) {
			char full[600];
			snprintf(full, sizeof full, "row %lld: %s", rows + 1, msg);
			fail(ctx, rc < 0 ? TS_SQLITE_ERROR : rc, full);
			sqlite3_finalize(st);
			return;
		}
		rows++;
	}
	sqlite3_finalize(st);
	sqlite3_result_int64(ctx, rows);
}

static int register_insert_rows(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
	(void)err;
	(void)api;
	// DIRECTONLY: not callable from triggers, views or the schema, only
	// from a statement the program prepares itself.
	return sqlite3_create_function_v2(db, "tetrascope_insert_rows", 3,
		TS_SQLITE_UTF8 | TS_SQLITE_DIRECTONLY, 0, insert_rows, 0, 0, 0);
}

// tetrascope_register_bulk makes every connection opened from now on have
// tetrascope_insert_rows.
int tetrascope_register_bulk(void) {
	return sqlite3_auto_extension((void (*)(void))register_insert_rows);
}
