/* inventory.c: the rescue OS's disk report, checked on the way in and drawn
 * as a table on the way out (inventory.h). */
#include "inventory.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A table bigger than this is cut (a report is at most a few MB anyway). */
#define MAX_ROWS 4096
#define MAX_DEPTH 32

static const char *
str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static bool
array_of_objects(const json_t *a)
{
    size_t i;
    json_t *x;
    json_array_foreach(a, i, x) if (!json_is_object(x)) return false;
    return true;
}

int
inventory_normalize(json_t *report, char *err, size_t errlen)
{
    /* The names of the images before the inventory had its own shape. */
    static const char *renames[][2] = {{"lsblk", "disks"}, {"md", "md_arrays"}};
    for (size_t i = 0; i < 2; i++) {
        json_t *old = json_object_get(report, renames[i][0]);
        if (!old || json_object_get(report, renames[i][1]))
            continue;
        json_t *v =
            json_is_object(old) ? json_object_get(old, "blockdevices") : old;
        json_object_set(report, renames[i][1], v ? v : json_null());
        json_object_del(report, renames[i][0]);
    }
    static const struct {
        const char *key;
        json_type type;
    } members[] = {{"disks", JSON_ARRAY},
                   {"md_arrays", JSON_ARRAY},
                   {"lvm", JSON_OBJECT},
                   {"root_guess", JSON_OBJECT},
                   {"tools", JSON_OBJECT}};
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        json_t *v = json_object_get(report, members[i].key);
        if (!v) {
            json_object_set_new(report, members[i].key, json_null());
            continue;
        }
        bool array = members[i].type == JSON_ARRAY;
        if (json_is_null(v) || (json_typeof(v) == members[i].type &&
                                (!array || array_of_objects(v))))
            continue;
        snprintf(err, errlen, "\"%s\" must be %s or null", members[i].key,
                 array ? "an array of objects" : "an object");
        return -EINVAL;
    }
    return 0;
}

void
inventory_size(long long bytes, char *out, size_t outlen)
{
    static const char units[] = "BKMGTPE";
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u < sizeof(units) - 2) {
        v /= 1024;
        u++;
    }
    /* lsblk: one decimal below 10 unless it is whole, none above. */
    if (u > 0 && v < 10 && (long long)(v * 10 + 0.5) % 10)
        snprintf(out, outlen, "%.1f%c", v, units[u]);
    else
        snprintf(out, outlen, "%.0f%c", v, units[u]);
}

/* A size that lsblk -J -b may give as a number or a string of digits. */
static void
size_of(const json_t *v, char *out, size_t outlen)
{
    long long n = -1;
    if (json_is_integer(v))
        n = json_integer_value(v);
    else if (json_is_string(v) && *json_string_value(v))
        n = strtoll(json_string_value(v), NULL, 10);
    if (n < 0)
        snprintf(out, outlen, "%s", "");
    else
        inventory_size(n, out, outlen);
}

struct row {
    const json_t *d;
    int parent, depth;
    bool last;
};

struct rows {
    struct row *v;
    size_t n;
};

/* In the report's order (lsblk's: each device before what it holds), a
 * device under the latest row its "parent" names, or under PARENT for an
 * older image's nested "children". */
static void
add_rows(struct rows *rs, const json_t *arr, int parent)
{
    size_t i;
    json_t *d;
    json_array_foreach(arr, i, d)
    {
        if (!json_is_object(d) || rs->n >= MAX_ROWS)
            continue;
        int p = parent;
        const char *pk = str(d, "parent");
        for (int j = (int)rs->n - 1; p < 0 && *pk && j >= 0; j--)
            if (!strcmp(str(rs->v[j].d, "kname"), pk) ||
                !strcmp(str(rs->v[j].d, "name"), pk))
                p = j;
        int depth = p < 0 ? 0 : rs->v[p].depth + 1;
        if (depth >= MAX_DEPTH)
            continue;
        rs->v[rs->n++] = (struct row){d, p, depth, true};
        const json_t *kids = json_object_get(d, "children");
        if (json_is_array(kids))
            add_rows(rs, kids, (int)rs->n - 1);
    }
}

/* The tree in front of row I, as lsblk -i draws it: "|-" or "`-" for the
 * row, "| " or "  " for each ancestor below the top. */
static void
tree_prefix(const struct rows *rs, size_t i, char *out, size_t outlen)
{
    int chain[MAX_DEPTH];
    int n = 0;
    for (int p = rs->v[i].parent; p >= 0 && n < MAX_DEPTH; p = rs->v[p].parent)
        chain[n++] = p;
    out[0] = '\0';
    size_t len = 0;
    /* chain[n-1] is the top; its own branch is not drawn. */
    for (int k = n - 2; k >= 0 && len + 3 < outlen; k--)
        len += (size_t)snprintf(out + len, outlen - len, "%s",
                                rs->v[chain[k]].last ? "  " : "| ");
    if (n > 0 && len + 3 < outlen)
        snprintf(out + len, outlen - len, "%s", rs->v[i].last ? "`-" : "|-");
}

static const char *
holds_of(const json_t *d)
{
    const char *h = str(d, "holds");
    if (*h)
        return h;
    h = str(d, "mountpoint");
    if (*h)
        return h;
    /* lsblk 2.37+ -J: mountpoints, a list with nulls. */
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(d, "mountpoints"), i,
                       m) if (json_is_string(m)) return json_string_value(m);
    return "";
}

enum { C_NAME, C_FSTYPE, C_LABEL, C_UUID, C_SIZE, C_HOLDS, NCOLS };

static void
format_disks(const json_t *disks, struct buf *out)
{
    struct rows rs = {xcalloc(MAX_ROWS, sizeof(struct row)), 0};
    add_rows(&rs, disks, -1);
    if (rs.n == 0) {
        free(rs.v);
        return;
    }
    for (size_t i = 0; i < rs.n; i++)
        for (size_t j = i + 1; j < rs.n && rs.v[i].last; j++)
            if (rs.v[j].parent == rs.v[i].parent)
                rs.v[i].last = false;

    static const char *heads[NCOLS] = {"NAME", "FSTYPE", "LABEL",
                                       "UUID", "SIZE",   "MOUNT/HOLDS"};
    char(*cells)[NCOLS][160] = xcalloc(rs.n, sizeof(*cells));
    int w[NCOLS];
    for (int k = 0; k < NCOLS; k++)
        w[k] = (int)strlen(heads[k]);
    for (size_t i = 0; i < rs.n; i++) {
        const json_t *d = rs.v[i].d;
        char prefix[2 * MAX_DEPTH + 4];
        tree_prefix(&rs, i, prefix, sizeof(prefix));
        snprintf(cells[i][C_NAME], sizeof(cells[i][C_NAME]), "%s%s", prefix,
                 str(d, "name"));
        snprintf(cells[i][C_FSTYPE], sizeof(cells[i][C_FSTYPE]), "%s",
                 str(d, "fstype"));
        snprintf(cells[i][C_LABEL], sizeof(cells[i][C_LABEL]), "%s",
                 str(d, "label"));
        snprintf(cells[i][C_UUID], sizeof(cells[i][C_UUID]), "%s",
                 str(d, "uuid"));
        size_of(json_object_get(d, "size"), cells[i][C_SIZE],
                sizeof(cells[i][C_SIZE]));
        snprintf(cells[i][C_HOLDS], sizeof(cells[i][C_HOLDS]), "%s",
                 holds_of(d));
        for (int k = 0; k < NCOLS; k++) {
            int n = (int)strlen(cells[i][k]);
            if (n > w[k])
                w[k] = n;
        }
    }
    buf_printf(out, "disks:\n");
    for (size_t i = 0; i <= rs.n; i++) {
        struct buf line = {0};
        buf_printf(&line, " ");
        for (int k = 0; k < NCOLS; k++) {
            const char *c = i == 0 ? heads[k] : cells[i - 1][k];
            if (k == C_SIZE)
                buf_printf(&line, " %*s", w[k], c);
            else if (k == NCOLS - 1)
                buf_printf(&line, " %s", c);
            else
                buf_printf(&line, " %-*s", w[k], c);
        }
        while (line.len && line.data[line.len - 1] == ' ')
            line.data[--line.len] = '\0';
        buf_printf(out, "%s\n", line.data);
        buf_free(&line);
    }
    free(cells);
    free(rs.v);
}

static void
format_md(const json_t *mds, struct buf *out)
{
    size_t i, j;
    json_t *m, *dev;
    json_array_foreach(mds, i, m)
    {
        buf_printf(out, "%-14s%s %s %s", "md_array:", str(m, "name"),
                   str(m, "level"), str(m, "state"));
        if (*str(m, "array_state"))
            buf_printf(out, " (%s)", str(m, "array_state"));
        json_int_t deg = json_integer_value(json_object_get(m, "degraded"));
        if (deg > 0)
            buf_printf(out, ", degraded by %lld", (long long)deg);
        buf_printf(out, ", devices");
        json_array_foreach(json_object_get(m, "devices"), j, dev) buf_printf(
            out, " %s", json_string_value(dev) ? json_string_value(dev) : "?");
        buf_printf(out, "\n");
    }
}

static void
format_lvm(const json_t *lvm, struct buf *out)
{
    size_t i, j;
    json_t *vg, *lv;
    json_array_foreach(json_object_get(lvm, "vgs"), i, vg)
    {
        char size[32], free_[32];
        size_of(json_object_get(vg, "size"), size, sizeof(size));
        size_of(json_object_get(vg, "free"), free_, sizeof(free_));
        buf_printf(out,
                   "%-14sVG %s %s (%s free), LVs:", "lvm:", str(vg, "name"),
                   size, free_);
        json_array_foreach(json_object_get(vg, "lvs"), j, lv)
        {
            size_of(json_object_get(lv, "size"), size, sizeof(size));
            buf_printf(
                out, " %s %s%s",
                *str(lv, "path") ? str(lv, "path") : str(lv, "name"), size,
                json_is_true(json_object_get(lv, "active")) ? ""
                                                            : " (inactive)");
        }
        buf_printf(out, "\n");
    }
}

static void
format_root(const json_t *g, bool have_disks, struct buf *out)
{
    if (!json_is_object(g)) {
        if (have_disks)
            buf_printf(out,
                       "%-14snone found (no ext4, xfs or btrfs holding "
                       "/etc/os-release or /etc/fstab, no LUKS)\n",
                       "root:");
        return;
    }
    if (!strcmp(str(g, "how"), "luks"))
        buf_printf(out, "%-14sprobably inside LUKS %s (closed)\n",
                   "root:", str(g, "device"));
    else {
        buf_printf(out, "%-14s%s (%s", "root:", str(g, "device"),
                   str(g, "fstype"));
        if (*str(g, "subvol"))
            buf_printf(out, ", subvolume %s", str(g, "subvol"));
        if (*str(g, "os"))
            buf_printf(out, ", %s", str(g, "os"));
        buf_printf(out, ")\n");
    }
    if (*str(g, "mount"))
        buf_printf(out, "%-14s%s\n", "mount_with:", str(g, "mount"));
}

void
inventory_format(const json_t *rescue, struct buf *out)
{
    const json_t *disks = json_object_get(rescue, "disks");
    if (json_is_array(disks))
        format_disks(disks, out);
    format_md(json_object_get(rescue, "md_arrays"), out);
    format_lvm(json_object_get(rescue, "lvm"), out);
    format_root(json_object_get(rescue, "root_guess"),
                json_array_size(disks) > 0, out);
    const json_t *t = json_object_get(rescue, "tools");
    if (json_is_object(t)) {
        const char *st = str(t, "state");
        if (!strcmp(st, "none"))
            st = "not offered (no [image] tools)";
        buf_printf(out, "%-14s%s%s%s\n", "tools:", st,
                   *str(t, "error") ? ": " : "", str(t, "error"));
    }
}
