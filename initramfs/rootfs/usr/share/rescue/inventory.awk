# inventory.awk: rescue-disks' scan as JSON object members, in one process
# (under emulation every process start costs tens of ms):
#   "disks":[...],"md_arrays":[...],"lvm":{"vgs":[...]},"root_guess":{...}
# Input lines, by their first word:
#   B lsblk -P line     M md|level|array_state|degraded|member,member
#   P pv|vg             V vg|size|free|pv_count|lv_count
#   L vg|lv|path|dm_path|size|active           G key|value (the root guess)

# A JSON string of S, or null when empty. lsblk writes quotes and bytes it
# will not print as \xNN, which JSON spells \u00NN.
function js(s, lsblk,    out, i, c, n) {
    if (s == "")
        return "null"
    out = ""
    n = length(s)
    for (i = 1; i <= n; i++) {
        c = substr(s, i, 1)
        if (lsblk && c == "\\" && substr(s, i + 1, 1) == "x") {
            out = out "\\u00"
            i++
        } else if (c == "\"" || c == "\\")
            out = out "\\" c
        else if (c >= " ")
            out = out c
    }
    return "\"" out "\""
}
function num(s) {
    return s ~ /^[0-9]+$/ ? s + 0 : "null"
}
function get(line, key,    p, v) {
    p = index(line, " " key "=\"")
    if (!p)
        return ""
    v = substr(line, p + length(key) + 3)
    return substr(v, 1, index(v, "\"") - 1)
}
function trim(s) {
    gsub(/^ +| +$/, "", s)
    return s
}

$1 == "B" {
    line = " " substr($0, 3)
    k = get(line, "KNAME")
    parent = get(line, "PKNAME")
    if (parent != "")
        children[parent] = children[parent] " " k
    if (k in seen)
        next
    seen[k] = 1
    order[++ndev] = k
    for (i = 1; i <= ncols; i++)
        dev[k, cols[i]] = get(line, cols[i])
    next
}
$1 == "M" {
    split(substr($0, 3), f, "|")
    md[++nmd] = f[1]
    mdlevel[f[1]] = f[2]
    mdstate[f[1]] = f[3]
    mddeg[f[1]] = f[4]
    mdmem[f[1]] = f[5]
    next
}
$1 == "P" {
    split(substr($0, 3), f, "|")
    pvvg[trim(f[1])] = trim(f[2])
    if (trim(f[2]) != "")
        vgpvs[trim(f[2])] = vgpvs[trim(f[2])] " " trim(f[1])
    next
}
$1 == "V" {
    split(substr($0, 3), f, "|")
    vg[++nvg] = trim(f[1])
    vgsize[trim(f[1])] = trim(f[2])
    vgfree[trim(f[1])] = trim(f[3])
    vgpvc[trim(f[1])] = trim(f[4])
    vglvc[trim(f[1])] = trim(f[5])
    next
}
$1 == "L" {
    split(substr($0, 3), f, "|")
    nlv++
    lvvg[nlv] = trim(f[1])
    lvname[nlv] = trim(f[2])
    lvpath[nlv] = trim(f[3])
    lvsize[nlv] = trim(f[5])
    lvactive[nlv] = trim(f[6])
    next
}
$1 == "G" {
    s = substr($0, 3)
    p = index(s, "|")
    guess[substr(s, 1, p - 1)] = substr(s, p + 1)
    next
}

BEGIN {
    ncols = split("NAME KNAME PKNAME PATH SIZE TYPE FSTYPE LABEL UUID " \
        "PARTTYPE PARTTYPENAME PARTUUID MODEL SERIAL MOUNTPOINT", cols, " ")
}

# What a device holds, in words: the md array, VG or LUKS mapping it
# carries, the root, or where it is mounted.
function holds(k,    fs, n, c, i, h, p) {
    fs = dev[k, "FSTYPE"]
    n = split(children[k], c, " ")
    if (fs == "linux_raid_member") {
        for (i = 1; i <= n; i++)
            if (dev[c[i], "TYPE"] ~ /^raid|^linear/)
                return "md member of " dev[c[i], "NAME"]
        return "md member (not assembled)"
    }
    if (fs == "crypto_LUKS") {
        for (i = 1; i <= n; i++)
            if (dev[c[i], "TYPE"] == "crypt")
                return "LUKS, open as " dev[c[i], "NAME"]
        return "LUKS (closed)"
    }
    if (fs == "LVM2_member") {
        p = dev[k, "PATH"]
        h = pvvg[p]
        if (h == "")
            h = pvvg["/dev/" k]
        if (h == "")
            h = pvvg["/dev/mapper/" dev[k, "NAME"]]
        return h == "" ? "LVM PV (no VG)" : "LVM PV of VG " h
    }
    if (fs == "swap")
        return "swap"
    if (k == guess["kname"])
        return "root" (guess["os"] != "" ? " of " guess["os"] : "")
    return dev[k, "MOUNTPOINT"]
}

END {
    printf "\"disks\":["
    for (d = 1; d <= ndev; d++) {
        k = order[d]
        printf "%s{\"name\":%s,\"kname\":%s,\"path\":%s,\"parent\":%s," \
            "\"size\":%s,\"type\":%s,\"fstype\":%s,\"label\":%s," \
            "\"uuid\":%s,\"parttype\":%s,\"parttypename\":%s," \
            "\"partuuid\":%s,\"model\":%s,\"serial\":%s," \
            "\"mountpoint\":%s,\"holds\":%s}", (d > 1 ? "," : ""),
            js(dev[k, "NAME"], 1), js(k, 1), js(dev[k, "PATH"], 1),
            js(dev[k, "PKNAME"], 1), num(dev[k, "SIZE"]),
            js(dev[k, "TYPE"], 1), js(dev[k, "FSTYPE"], 1),
            js(dev[k, "LABEL"], 1), js(dev[k, "UUID"], 1),
            js(dev[k, "PARTTYPE"], 1), js(dev[k, "PARTTYPENAME"], 1),
            js(dev[k, "PARTUUID"], 1), js(trim(dev[k, "MODEL"]), 1),
            js(trim(dev[k, "SERIAL"]), 1), js(dev[k, "MOUNTPOINT"], 1),
            js(holds(k), 0)
    }
    printf "],\"md_arrays\":["
    for (i = 1; i <= nmd; i++) {
        m = md[i]
        n = split(mdmem[m], mem, ",")
        devs = ""
        for (j = 1; j <= n; j++)
            devs = devs (j > 1 ? "," : "") js(mem[j], 0)
        printf "%s{\"name\":%s,\"path\":%s,\"level\":%s,\"state\":%s," \
            "\"array_state\":%s,\"degraded\":%s,\"devices\":[%s]}",
            (i > 1 ? "," : ""), js(m, 0), js("/dev/" m, 0), js(mdlevel[m], 0),
            js(mdstate[m] == "inactive" || mdstate[m] == "" ? "inactive" : "active", 0),
            js(mdstate[m], 0), num(mddeg[m]), devs
    }
    printf "],\"lvm\":{\"vgs\":["
    for (i = 1; i <= nvg; i++) {
        v = vg[i]
        n = split(vgpvs[v], pv, " ")
        pvs = ""
        for (j = 1; j <= n; j++)
            pvs = pvs (j > 1 ? "," : "") js(pv[j], 0)
        lvs = ""
        for (j = 1; j <= nlv; j++) {
            if (lvvg[j] != v)
                continue
            lvs = lvs (lvs != "" ? "," : "") "{\"name\":" js(lvname[j], 0) \
                ",\"path\":" js(lvpath[j], 0) ",\"size\":" num(lvsize[j]) \
                ",\"active\":" (lvactive[j] == "active" ? "true" : "false") "}"
        }
        printf "%s{\"name\":%s,\"size\":%s,\"free\":%s,\"pv_count\":%s," \
            "\"lv_count\":%s,\"pvs\":[%s],\"lvs\":[%s]}", (i > 1 ? "," : ""),
            js(v, 0), num(vgsize[v]), num(vgfree[v]), num(vgpvc[v]),
            num(vglvc[v]), pvs, lvs
    }
    printf "]},\"root_guess\":"
    if (guess["device"] == "")
        printf "null"
    else
        printf "{\"device\":%s,\"fstype\":%s,\"how\":%s,\"subvol\":%s," \
            "\"os\":%s,\"mount\":%s}", js(guess["device"], 0),
            js(guess["fstype"], 0), js(guess["how"], 0),
            js(guess["subvol"], 0), js(guess["os"], 0), js(guess["mount"], 0)
    printf "\n"
}
