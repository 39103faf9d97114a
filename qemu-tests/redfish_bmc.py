#!/usr/bin/env python3
"""A Redfish BMC emulator for the harness, written for rescued's tests.

It is NOT a Redfish implementation and was not checked by DMTF's tools: it
is our own small server (Python's http.server and ssl, nothing else) whose
resource tree follows the shapes of DMTF's published mockups (the service
root, Systems/1, Managers/1, Chassis/1, SessionService with X-Auth-Token
sessions, TaskService task monitors), with what rescued's driver reads:
ETags (header and @odata.etag), @Redfish.Settings, @Redfish.AllowableValues,
@Redfish.ActionInfo, 202 + task monitor.  Behind it a lab QEMU, driven
through its QMP socket (one short connection per operation):

  ResetType On                  system_reset + cont when it was off
  ForceOff, GracefulShutdown    system_reset + stop (QEMU cannot power off
                                without exiting: held paused, as power_qmp)
  ForceRestart, GracefulRestart,
  PowerCycle                    system_reset (+ cont when paused)
  Nmi                           inject-nmi
  PowerState                    query-status: running is On, else Off
  Boot override, at the next reset: Pxe puts the NIC back at its own
  bootindex; Hdd takes the NIC out of the boot order (bootindex -1) for
  that boot, as power_qmp does; Cd puts the CD drive (--cd) first
  (bootindex 0); Once is then cleared (Disabled, None).
  Virtual media (Managers/1/VirtualMedia/CD1): InsertMedia downloads
  Image (http:// or file://) to a file of its own and puts it in the CD
  drive (blockdev-change-medium on --cd, QEMU's own "ide1-cd0" by
  default); EjectMedia empties it (eject).
Without --qmp the machine is a variable (power on/off only), enough for
the loopback cases.

    redfish_bmc.py --listen HOST:PORT [--qmp SOCK --nic net0]
                   [--cert PEM --key PEM] [--user U --password P]
                   [--firmware bios|uefi] [QUIRKS]

Quirks (the BMCs users complain about; FACTS.md):
  --revert-once     the first override PATCH answers 204 and keeps nothing
  --revert-always   every override PATCH answers 204 and keeps nothing
  --drop-mode       BootSourceOverrideMode is kept only when the PATCH before
                    carried it too (resent); else it falls to the other mode
                    (Supermicro), and a reset with the wrong mode ignores
                    the override
  --refuse-mode     a PATCH carrying BootSourceOverrideMode is refused (400)
  --weak-etag       ETags are weak (W/"..."), and If-Match must be strong
  --stale-etag      the first PATCH with If-Match gets 412 whatever it says
  --task-reset      Reset answers 202 with a task monitor (done after 1 s)
  --session-ttl S   sessions expire S seconds after login ("session N
                    expired" then; 401 after)
  --no-sessions     no SessionService: HTTP Basic only
  --settings        Boot is PATCHed through @Redfish.Settings (Systems/1/Settings)
  --action-info     allowed ResetTypes in @Redfish.ActionInfo, not inline
  --reset-types L   comma list of allowed ResetTypes (default: the standard)
  --ignore-boot [T] accepts and shows the override, never applies it (only
                    when its target is T, if given: --ignore-boot Hdd)
  --continuous      keeps BootSourceOverrideEnabled Continuous whatever is
                    PATCHed (as sushy-tools does): nothing clears it
  --vm-strict       InsertMedia refuses explicit Inserted / WriteProtected
                    (Supermicro X11)
  --vm-patch        no InsertMedia action: the Image is PATCHed
  --hang-delete     a DELETE of a session (a logout) is never answered
  --fail M:PATH:CODE[:SKIP]
                    requests M PATH (after the first SKIP of them) fail: CODE
                    an HTTP status with an @Message.ExtendedInfo ("Injected
                    failure of M PATH."), 0 the connection closed with no
                    answer, -1 no answer ever; repeatable
The log counts open sessions ("session 2 created (1 open)", "session 2
deleted (0 open)"); GET SessionService/Sessions lists them.
SIGHUP is a BMC restart: every session is dropped, ETags change, and the
BMC answers 503 for 2 s.

One line per request and per action on stdout ("GET /redfish/v1 200",
"patch Boot Pxe Once Legacy", "reset ForceRestart", "apply Pxe"), for the
cases to read.  Passwords and tokens are never printed.
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time

LOCK = threading.RLock()
ARGS = None
STATE = {
    "power": "On",  # without QMP
    "target": "None",
    "enabled": "Disabled",
    "mode": "Legacy",
    "last_patch_mode": False,
    "reverted": False,
    "stale_done": False,
    "generation": 1,  # bumped by a BMC restart: ETags change
    "nic_index": None,  # the NIC's own bootindex, once read
    "nic_out": False,
    "down_until": 0.0,
    "media": None,  # the Image inserted, or None
    "media_file": None,
    "cd_out": None,  # the CD's bootindex to put back after a Cd boot
}
SESSIONS = {}  # token -> (id, created)
FAILS = []  # --fail: {method, path, code, skip}
TASKS = {}  # id -> done-at
COUNTER = [0]
STANDARD_RESETS = [
    "On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart",
    "Nmi", "PowerCycle",
]
BOOT_TARGETS = ["None", "Pxe", "Hdd", "Cd", "BiosSetup"]


def log(msg):
    print(msg, flush=True)


# ---- QMP ----

def qmp(*cmds):
    """Run cmds ((name, args) pairs) on one connection; their returns."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    deadline = time.time() + 10
    while True:  # rescued may still hold the socket after a reload
        try:
            s.connect(ARGS.qmp)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    f = s.makefile("rw")
    out = []
    try:
        json.loads(f.readline())
        for name, args in [("qmp_capabilities", None)] + list(cmds):
            msg = {"execute": name}
            if args is not None:
                msg["arguments"] = args
            f.write(json.dumps(msg) + "\n")
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    raise OSError("qmp closed")
                rep = json.loads(line)
                if "event" in rep:
                    continue
                if "error" in rep:
                    raise OSError("qmp %s: %s" % (name, rep["error"]))
                out.append(rep.get("return"))
                break
    finally:
        s.close()
    return out[1:]


def power_state():
    if not ARGS.qmp:
        return STATE["power"]
    st = qmp(("query-status", None))[0]
    return "On" if st.get("running") else "Off"


def nic_set(index):
    cur = qmp(("qom-get", {"path": ARGS.nic, "property": "bootindex"}))[0]
    if STATE["nic_index"] is None:
        STATE["nic_index"] = cur if cur >= 0 else 1
    if cur != index:
        qmp(("qom-set", {"path": ARGS.nic, "property": "bootindex",
                         "value": index}))


def cd_qom():
    """The QOM path of the CD drive's device (bootindex lives there)."""
    for b in qmp(("query-block", None))[0]:
        if b.get("device") == ARGS.cd or b.get("qdev") == ARGS.cd:
            return b.get("qdev") or ARGS.cd
    return ARGS.cd


def media_insert(image):
    """Fetch image into our own file and put it in the CD drive."""
    import urllib.request
    fd, path = tempfile.mkstemp(prefix="redfish_bmc.", suffix=".iso")
    os.close(fd)
    with urllib.request.urlopen(image, timeout=30) as r, \
            open(path, "wb") as out:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)
    if ARGS.qmp:
        qmp(("blockdev-change-medium", {"device": ARGS.cd, "filename": path,
                                        "format": "raw",
                                        "read-only-mode": "read-only"}))
    media_drop_file()
    STATE["media"], STATE["media_file"] = image, path
    log("media inserted %s" % image)


def media_drop_file():
    if STATE["media_file"]:
        try:
            os.unlink(STATE["media_file"])
        except OSError:
            pass
    STATE["media_file"] = None


def media_eject():
    if ARGS.qmp:
        qmp(("eject", {"device": ARGS.cd, "force": True}))
    media_drop_file()
    STATE["media"] = None
    log("media ejected")


def virtual_media():
    p = "/redfish/v1/Managers/1/VirtualMedia/CD1"
    b = {"Id": "CD1", "Name": "Virtual CD", "MediaTypes": ["CD", "DVD"],
         "Image": STATE["media"], "Inserted": STATE["media"] is not None,
         "WriteProtected": True, "ConnectedVia": "URI"}
    if not ARGS.vm_patch:
        b["Actions"] = {
            "#VirtualMedia.InsertMedia": {
                "target": p + "/Actions/VirtualMedia.InsertMedia"},
            "#VirtualMedia.EjectMedia": {
                "target": p + "/Actions/VirtualMedia.EjectMedia"}}
    return odata(p, "#VirtualMedia.v1_6_0.VirtualMedia", b)


def apply_override():
    """At a reset: the override for this boot, then Once is used up."""
    target = STATE["target"] if STATE["enabled"] != "Disabled" else "None"
    fw_mode = "UEFI" if ARGS.firmware == "uefi" else "Legacy"
    if target != "None" and STATE["mode"] != fw_mode:
        log("apply %s ignored: mode %s on a %s server" %
            (target, STATE["mode"], fw_mode))
        target = "None"
    if ARGS.ignore_boot and ARGS.ignore_boot in ("all", target):
        if target != "None":
            log("ignored %s (quirk)" % target)
        target = "None"
    if ARGS.qmp and STATE["cd_out"] is not None and target != "Cd":
        qmp(("qom-set", {"path": cd_qom(), "property": "bootindex",
                         "value": STATE["cd_out"]}))
        STATE["cd_out"] = None
    if ARGS.qmp and target == "Cd":
        cur = qmp(("qom-get", {"path": cd_qom(), "property": "bootindex"}))[0]
        if STATE["cd_out"] is None:
            STATE["cd_out"] = cur
        if cur != 0:
            if ARGS.nic:
                nic_set(-1)  # 0 may be the NIC's: out of the way
            qmp(("qom-set", {"path": cd_qom(), "property": "bootindex",
                             "value": 0}))
    elif ARGS.qmp and ARGS.nic:
        if target == "Hdd":
            nic_set(-1)
        elif STATE["nic_index"] is not None or target == "Pxe":
            if STATE["nic_index"] is None:
                nic_set(1)  # reads it
            nic_set(STATE["nic_index"])
    if target != "None":
        log("apply %s" % target)
    if STATE["enabled"] == "Once":
        STATE["enabled"] = "Disabled"
        STATE["target"] = "None"


def do_reset(kind):
    log("reset %s" % kind)
    if not ARGS.qmp:
        if kind in ("ForceOff", "GracefulShutdown"):
            STATE["power"] = "Off"
        elif kind != "Nmi":
            if kind != "On" or STATE["power"] == "Off":
                apply_override()
            STATE["power"] = "On"
        return
    if kind == "Nmi":
        qmp(("inject-nmi", None))
        return
    running = qmp(("query-status", None))[0].get("running")
    if kind in ("ForceOff", "GracefulShutdown"):
        qmp(("system_reset", None), ("stop", None))
        return
    if kind == "On" and running:
        return
    apply_override()
    qmp(("system_reset", None))
    if not qmp(("query-status", None))[0].get("running"):
        qmp(("cont", None))


# ---- resources ----

def odata(path, typ, body):
    body = dict(body)
    body["@odata.id"] = path
    body["@odata.type"] = typ
    return body


def etag_of(body):
    h = hashlib.sha1(json.dumps(body, sort_keys=True).encode() +
                     str(STATE["generation"]).encode()).hexdigest()[:16]
    return ('W/"%s"' if ARGS.weak_etag else '"%s"') % h


def reset_types():
    if ARGS.reset_types:
        return ARGS.reset_types.split(",")
    return STANDARD_RESETS


def service_root():
    b = {
        "Id": "RootService", "Name": "Root Service",
        "RedfishVersion": "1.15.0",
        "UUID": "92384634-2938-2342-8820-489239905423",
        "Systems": {"@odata.id": "/redfish/v1/Systems"},
        "Managers": {"@odata.id": "/redfish/v1/Managers"},
        "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
        "TaskService": {"@odata.id": "/redfish/v1/TaskService"},
        "Links": {},
    }
    if not ARGS.no_sessions:
        b["SessionService"] = {"@odata.id": "/redfish/v1/SessionService"}
        b["Links"]["Sessions"] = {
            "@odata.id": "/redfish/v1/SessionService/Sessions"}
    return odata("/redfish/v1", "#ServiceRoot.v1_15_0.ServiceRoot", b)


def boot_body():
    return {
        "BootSourceOverrideEnabled": STATE["enabled"],
        "BootSourceOverrideTarget": STATE["target"],
        "BootSourceOverrideTarget@Redfish.AllowableValues": BOOT_TARGETS,
        "BootSourceOverrideMode": STATE["mode"],
        "BootSourceOverrideEnabled@Redfish.AllowableValues":
            ["Disabled", "Once", "Continuous"],
    }


def system():
    reset = {"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}
    if ARGS.action_info:
        reset["@Redfish.ActionInfo"] = "/redfish/v1/Systems/1/ResetActionInfo"
    else:
        reset["ResetType@Redfish.AllowableValues"] = reset_types()
    b = {
        "Id": "1", "Name": "Lab server", "SystemType": "Physical",
        "Manufacturer": "rescued tests", "Model": "redfish_bmc.py",
        "UUID": "38947555-7742-3448-3784-823347823834",
        "PowerState": power_state(),
        "Boot": boot_body(),
        "Actions": {"#ComputerSystem.Reset": reset},
        "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/1"}],
                  "Chassis": [{"@odata.id": "/redfish/v1/Chassis/1"}]},
    }
    if ARGS.settings:
        b["@Redfish.Settings"] = {
            "@odata.type": "#Settings.v1_3_5.Settings",
            "SettingsObject": {"@odata.id": "/redfish/v1/Systems/1/Settings"},
        }
    return odata("/redfish/v1/Systems/1",
                 "#ComputerSystem.v1_20_0.ComputerSystem", b)


def collection(path, typ, members):
    return odata(path, typ, {
        "Name": path.rsplit("/", 1)[-1], "Members@odata.count": len(members),
        "Members": [{"@odata.id": m} for m in members]})


def resource(path):
    if path in ("/redfish/v1", "/redfish/v1/"):
        return service_root()
    if path == "/redfish/v1/Systems":
        return collection(path, "#ComputerSystemCollection."
                          "ComputerSystemCollection", ["/redfish/v1/Systems/1"])
    if path == "/redfish/v1/Systems/1":
        return system()
    if path == "/redfish/v1/Systems/1/Settings" and ARGS.settings:
        return odata(path, "#ComputerSystem.v1_20_0.ComputerSystem",
                     {"Id": "Settings", "Boot": boot_body()})
    if path == "/redfish/v1/Systems/1/ResetActionInfo" and ARGS.action_info:
        return odata(path, "#ActionInfo.v1_3_0.ActionInfo", {
            "Id": "ResetActionInfo", "Parameters": [{
                "Name": "ResetType", "Required": True, "DataType": "String",
                "AllowableValues": reset_types()}]})
    if path == "/redfish/v1/Managers":
        return collection(path, "#ManagerCollection.ManagerCollection",
                          ["/redfish/v1/Managers/1"])
    if path == "/redfish/v1/Managers/1":
        return odata(path, "#Manager.v1_17_0.Manager", {
            "Id": "1", "Name": "BMC", "ManagerType": "BMC",
            "FirmwareVersion": "emulator-1",
            "VirtualMedia": {
                "@odata.id": "/redfish/v1/Managers/1/VirtualMedia"},
            "Links": {"ManagerForServers": [
                {"@odata.id": "/redfish/v1/Systems/1"}]}})
    if path == "/redfish/v1/Managers/1/VirtualMedia":
        return collection(path, "#VirtualMediaCollection."
                          "VirtualMediaCollection",
                          ["/redfish/v1/Managers/1/VirtualMedia/CD1"])
    if path == "/redfish/v1/Managers/1/VirtualMedia/CD1":
        return virtual_media()
    if path == "/redfish/v1/Chassis":
        return collection(path, "#ChassisCollection.ChassisCollection",
                          ["/redfish/v1/Chassis/1"])
    if path == "/redfish/v1/Chassis/1":
        return odata(path, "#Chassis.v1_22_0.Chassis", {
            "Id": "1", "Name": "Lab chassis", "ChassisType": "RackMount",
            "PowerState": power_state()})
    if path == "/redfish/v1/SessionService" and not ARGS.no_sessions:
        return odata(path, "#SessionService.v1_1_8.SessionService", {
            "Id": "SessionService", "Name": "Session Service",
            "ServiceEnabled": True,
            "SessionTimeout": ARGS.session_ttl or 1800,
            "Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}})
    if path == "/redfish/v1/SessionService/Sessions" and not ARGS.no_sessions:
        return collection(path, "#SessionCollection.SessionCollection",
                          ["/redfish/v1/SessionService/Sessions/%s" % v[0]
                           for v in SESSIONS.values()])
    if path == "/redfish/v1/TaskService":
        return odata(path, "#TaskService.v1_2_0.TaskService", {
            "Id": "TaskService", "Tasks": {
                "@odata.id": "/redfish/v1/TaskService/Tasks"}})
    return None


def error_body(msgid, text):
    return {"error": {"code": "Base.1.16." + msgid, "message": text,
                      "@Message.ExtendedInfo": [{
                          "MessageId": "Base.1.16." + msgid,
                          "Message": text}]}}


# ---- the server ----

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "redfish_bmc.py"

    def log_message(self, fmt, *a):
        pass

    def setup(self):
        super().setup()
        log("connection")  # one per TCP connection: keep-alive shows

    def answer(self, code, body=None, headers=None):
        data = b""
        if body is not None:
            data = json.dumps(body, indent=1).encode()
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("OData-Version", "4.0")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        log("%s %s %d" % (self.command, self.path, code))

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def authorized(self):
        tok = self.headers.get("X-Auth-Token")
        if tok and not ARGS.no_sessions:
            s = SESSIONS.get(tok)
            if s and (not ARGS.session_ttl or
                      time.time() - s[1] < ARGS.session_ttl):
                return True
            if s:
                log("session %s expired" % s[0])
                del SESSIONS[tok]
            return False
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return u == ARGS.user and p == ARGS.password
        return False

    def injected(self, path):
        """True when a --fail switch answered (or did not answer) it."""
        for f in FAILS:
            if f["method"] != self.command or f["path"] != path.rstrip("/"):
                continue
            if f["skip"] > 0:
                f["skip"] -= 1
                continue
            self.body()
            if f["code"] == 0:
                log("%s %s: closed (quirk)" % (self.command, path))
                self.close_connection = True
            elif f["code"] < 0:
                log("%s %s: no answer (quirk)" % (self.command, path))
                LOCK.release()
                try:
                    time.sleep(3600)
                finally:
                    LOCK.acquire()
            else:
                b = error_body("InternalError", "Injected failure of %s %s." %
                               (self.command, path))
                b["error"]["message"] = "A general error has occurred."
                self.answer(f["code"], b)
            return True
        return False

    def gate(self):
        """False when the request was answered already (down, 401)."""
        if time.time() < STATE["down_until"]:
            self.body()
            self.answer(503, error_body("ServiceTemporarilyUnavailable",
                                        "The BMC is restarting."))
            return False
        path = self.path.split("?")[0]
        if self.injected(path):
            return False
        if path in ("/redfish", "/redfish/", "/redfish/v1", "/redfish/v1/"):
            return True
        if (self.command == "POST" and not ARGS.no_sessions and
                path == "/redfish/v1/SessionService/Sessions"):
            return True
        if not self.authorized():
            self.body()
            self.answer(401, error_body("InsufficientPrivilege",
                                        "Authentication required."),
                        {"WWW-Authenticate": 'Basic realm="BMC"'})
            return False
        return True

    def do_GET(self):
        with LOCK:
            if not self.gate():
                return
            path = self.path.split("?")[0].rstrip("/") or "/"
            if path == "/redfish":
                return self.answer(200, {"v1": "/redfish/v1/"})
            if path.startswith("/redfish/v1/TaskService/Tasks/"):
                return self.task(path)
            try:
                b = resource(path)
            except OSError as e:
                return self.answer(500, error_body("InternalError", str(e)))
            if b is None:
                return self.answer(404, error_body(
                    "ResourceMissingAtURI", "No resource at %s." % path))
            tag = etag_of(b)
            b["@odata.etag"] = tag
            self.answer(200, b, {"ETag": tag})

    do_HEAD = do_GET

    def task(self, path):
        tid = path.rsplit("/", 1)[-1]
        if tid not in TASKS:
            return self.answer(404, error_body("ResourceMissingAtURI",
                                               "No task %s." % tid))
        done_at, kind = TASKS[tid]
        state = "Completed" if time.time() >= done_at else "Running"
        if state == "Completed" and kind:
            TASKS[tid] = (done_at, None)
            try:
                do_reset(kind)
            except OSError as e:
                state = "Exception"
                log("task %s failed: %s" % (tid, e))
        b = odata(path, "#Task.v1_7_0.Task", {
            "Id": tid, "TaskState": state,
            "TaskStatus": "OK" if state != "Exception" else "Critical"})
        self.answer(202 if state == "Running" else 200, b,
                    {"Location": path} if state == "Running" else None)

    def do_POST(self):
        with LOCK:
            if not self.gate():
                return
            path = self.path.split("?")[0]
            body = self.body()
            if body is None:
                return self.answer(400, error_body("MalformedJSON",
                                                   "The body is not JSON."))
            if path == "/redfish/v1/SessionService/Sessions":
                return self.login(body)
            if path == "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset":
                return self.reset(body)
            vm = "/redfish/v1/Managers/1/VirtualMedia/CD1/Actions/"
            if path == vm + "VirtualMedia.InsertMedia" and not ARGS.vm_patch:
                return self.insert(body)
            if path == vm + "VirtualMedia.EjectMedia" and not ARGS.vm_patch:
                try:
                    media_eject()
                except OSError as e:
                    return self.answer(500, error_body("InternalError",
                                                       str(e)))
                return self.answer(204)
            self.answer(405, error_body("ActionNotSupported", "No action."))

    def login(self, body):
        if body.get("UserName") != ARGS.user or \
                body.get("Password") != ARGS.password:
            log("login refused for %r" % body.get("UserName"))
            return self.answer(401, error_body(
                "InsufficientPrivilege",
                "Invalid username or password."))
        COUNTER[0] += 1
        sid = str(COUNTER[0])
        tok = hashlib.sha256(os.urandom(16)).hexdigest()
        SESSIONS[tok] = (sid, time.time())
        log("session %s created (%d open)" % (sid, len(SESSIONS)))
        if ARGS.session_ttl:
            def expire():
                with LOCK:
                    if SESSIONS.pop(tok, None):
                        log("session %s expired" % sid)
            t = threading.Timer(ARGS.session_ttl, expire)
            t.daemon = True
            t.start()
        loc = "/redfish/v1/SessionService/Sessions/" + sid
        self.answer(201, odata(loc, "#Session.v1_6_0.Session",
                               {"Id": sid, "UserName": ARGS.user}),
                    {"X-Auth-Token": tok, "Location": loc})

    def insert(self, body):
        if ARGS.vm_strict and ("Inserted" in body or
                               "WriteProtected" in body):
            log("refused Inserted/WriteProtected (quirk)")
            return self.answer(400, error_body(
                "ActionParameterNotSupported", "The parameters Inserted "
                "and WriteProtected are not supported."))
        image = body.get("Image")
        if not isinstance(image, str) or not image:
            return self.answer(400, error_body(
                "ActionParameterMissing", "Image is required."))
        try:
            media_insert(image)
        except (OSError, ValueError) as e:
            log("media insert failed: %s" % e)
            return self.answer(400, error_body(
                "ResourceAtUriUnauthorized" if "403" in str(e)
                else "CouldNotEstablishConnection",
                "The image %s could not be fetched: %s" % (image, e)))
        self.answer(204)

    def reset(self, body):
        kind = body.get("ResetType")
        if kind not in reset_types():
            return self.answer(400, error_body(
                "ActionParameterNotSupported",
                "The value %s for the parameter ResetType is not "
                "supported." % kind))
        if ARGS.task_reset:
            COUNTER[0] += 1
            tid = str(COUNTER[0])
            TASKS[tid] = (time.time() + 1.0, kind)
            loc = "/redfish/v1/TaskService/Tasks/" + tid
            log("task %s for reset %s" % (tid, kind))
            return self.answer(202, odata(loc, "#Task.v1_7_0.Task", {
                "Id": tid, "TaskState": "Running"}), {"Location": loc})
        try:
            do_reset(kind)
        except OSError as e:
            return self.answer(500, error_body("InternalError", str(e)))
        self.answer(204)

    def do_DELETE(self):
        with LOCK:
            if not self.gate():
                return
            sid = self.path.rsplit("/", 1)[-1]
            for tok, v in list(SESSIONS.items()):
                if v[0] == sid:
                    if ARGS.hang_delete:
                        log("DELETE session %s: no answer (quirk)" % sid)
                        break
                    del SESSIONS[tok]
                    log("session %s deleted (%d open)" % (sid, len(SESSIONS)))
                    return self.answer(204)
            else:
                return self.answer(404, error_body("ResourceMissingAtURI",
                                                   "No session."))
        time.sleep(3600)  # outside the lock: the rest still answers

    def do_PATCH(self):
        with LOCK:
            if not self.gate():
                return
            path = self.path.split("?")[0]
            body = self.body()
            if path == "/redfish/v1/Managers/1/VirtualMedia/CD1" and \
                    ARGS.vm_patch:
                image = (body or {}).get("Image")
                try:
                    if image:
                        media_insert(image)
                    else:
                        media_eject()
                except (OSError, ValueError) as e:
                    return self.answer(400, error_body(
                        "CouldNotEstablishConnection", str(e)))
                return self.answer(204)
            want = "/redfish/v1/Systems/1/Settings" if ARGS.settings \
                else "/redfish/v1/Systems/1"
            if path != want:
                return self.answer(405, error_body(
                    "OperationNotAllowed", "PATCH %s is not allowed; "
                    "use %s." % (path, want)))
            if body is None or not isinstance(body.get("Boot"), dict):
                return self.answer(400, error_body(
                    "MalformedJSON", "Only Boot is writable here."))
            cur = resource(path)
            tag = etag_of(cur)
            im = self.headers.get("If-Match")
            if im is not None:
                if ARGS.stale_etag and not STATE["stale_done"]:
                    STATE["stale_done"] = True
                    log("412 stale (quirk)")
                    return self.answer(412, error_body(
                        "PreconditionFailed", "The ETag does not match."))
                strong = tag[2:] if tag.startswith("W/") else tag
                if im != "*" and im != strong:
                    log("412 If-Match %s, have %s" % (im, strong))
                    return self.answer(412, error_body(
                        "PreconditionFailed", "The ETag does not match."))
            boot = body["Boot"]
            if ARGS.refuse_mode and "BootSourceOverrideMode" in boot:
                log("refused Mode (quirk)")
                return self.answer(400, error_body(
                    "PropertyNotWritable", "The property "
                    "BootSourceOverrideMode is a read only property and "
                    "cannot be assigned a value."))
            t = boot.get("BootSourceOverrideTarget", STATE["target"])
            e = boot.get("BootSourceOverrideEnabled", STATE["enabled"])
            m = boot.get("BootSourceOverrideMode")
            if t not in BOOT_TARGETS or \
                    e not in ("Disabled", "Once", "Continuous") or \
                    m not in (None, "UEFI", "Legacy"):
                return self.answer(400, error_body(
                    "PropertyValueNotInList", "A Boot value is not "
                    "one of its AllowableValues."))
            log("patch Boot %s %s %s" % (t, e, m or "-"))
            if ARGS.revert_always or (ARGS.revert_once and
                                      not STATE["reverted"] and t != "None"):
                STATE["reverted"] = True
                log("reverted (quirk)")
                return self.answer(204)
            if ARGS.continuous and e == "Once":
                e = "Continuous"
            STATE["target"], STATE["enabled"] = t, e
            if ARGS.drop_mode:
                if m and STATE["last_patch_mode"]:
                    STATE["mode"] = m
                else:
                    fw = "UEFI" if ARGS.firmware == "uefi" else "Legacy"
                    STATE["mode"] = "Legacy" if fw == "UEFI" else "UEFI"
                STATE["last_patch_mode"] = m is not None
            elif m:
                STATE["mode"] = m
            self.answer(204)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--qmp")
    ap.add_argument("--nic", default="net0")
    ap.add_argument("--cd", default="ide1-cd0")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="s3cret")
    ap.add_argument("--firmware", default="bios", choices=["bios", "uefi"])
    for q in ("revert-once", "revert-always", "drop-mode", "refuse-mode", "weak-etag",
              "stale-etag", "task-reset", "no-sessions", "settings",
              "action-info", "vm-strict", "vm-patch",
              "continuous", "hang-delete"):
        ap.add_argument("--" + q, action="store_true")
    ap.add_argument("--session-ttl", type=float, default=0)
    ap.add_argument("--reset-types")
    ap.add_argument("--ignore-boot", nargs="?", const="all")
    ap.add_argument("--fail", action="append", default=[])
    ARGS = ap.parse_args()
    for spec in ARGS.fail:
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            ap.error("--fail M:PATH:CODE[:SKIP], not %s" % spec)
        FAILS.append({"method": parts[0], "path": parts[1].rstrip("/"),
                      "code": int(parts[2]),
                      "skip": int(parts[3]) if len(parts) == 4 else 0})
    STATE["mode"] = "UEFI" if ARGS.firmware == "uefi" else "Legacy"
    host, _, port = ARGS.listen.rpartition(":")
    srv = Server((host, int(port)), Handler)
    if ARGS.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.cert, ARGS.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)

    def restart(*_):
        with LOCK:
            SESSIONS.clear()
            STATE["generation"] += 1
            STATE["down_until"] = time.time() + 2
        log("bmc restart")

    signal.signal(signal.SIGHUP, restart)

    def stop(*_):
        media_drop_file()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    log("ready %s" % ARGS.listen)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
