#!/usr/bin/env python3
"""altoshield beside nginx, on the same origin, the same load and the same machine.

Starts the reference origin (`altoshield origin --generate`), nginx configured as a TLS-terminating
caching proxy in front of it (proxy_cache, proxy_cache_lock, POST caching with the body in the key,
stale-while-updating, the IRD's URIs rewritten to nginx: the strongest general-purpose setup), and
altoshield in front of the same origin. Then, alternating the two so that drift on a noisy machine
hits both alike, in each round:

  get_hit       cached network-map GETs over TLS, HTTP/1.1 (wrk, keep-alive, 64 connections)
  post_hit      cached endpoint-cost POSTs over TLS, HTTP/1.1 (wrk, one body)
  *_h2          the same over HTTP/2 (h2load, 16 connections x 4 streams)
  herd          N concurrent identical endpoint-cost POSTs on a cold key (a fresh body each time):
                origin requests, and what coalescing adds = cold p90 - p90 of the same herd once
                cached - the origin's own delay (median of --herds herds)

and prints each figure for both and the ratio altoshield/nginx (medians over rounds). Any error or
non-2xx answer under load aborts the run: a fast error must never look like a fast answer.

Before those rounds, on cold caches, the epoch-driven P2P swarm (`altoshield loadgen`, with
`--origin-metrics` on the origin's counters) runs against the origin directly, against nginx, and
against a fresh altoshield in each `ecs.mode` that `altoshield check-config` accepts (so new modes
are picked up as they land); it prints, for each, the origin's requests, endpoint-cost requests and
endpoint-cost pairs per epoch, and the client's p50/p99 latency and errors.
Everything binds and targets 127.0.0.1; every load is bounded in time; every process it starts is
stopped by its PID.

Needs: a release build (`cargo build --release`, or ALTOSHIELD_BIN=path/to/altoshield), nginx, wrk and h2load (installed with apt-get if
missing), openssl, python3. Run from the project root:

  python3 benches/vs-nginx.py [--rounds 3] [--duration 8] [--herd 1000] [--herds 3] [--delay-ms 20]
                              [--swarm-peers 500] [--swarm-epochs 10] [--swarm-epoch 1s] [--swarm-policy all]
                              [--swarm-map-clients 20] [--no-swarm]
"""
import argparse, asyncio, json, os, re, shutil, signal, socket, ssl, statistics, subprocess, sys, tempfile, time
import ipaddress
import urllib.parse, urllib.request, urllib.error

BIN = os.path.abspath(os.environ.get("ALTOSHIELD_BIN", "target/release/altoshield"))
NM = "application/alto-networkmap+json"
ECS_CT = "application/alto-endpointcostparams+json"
ECS_ACCEPT = "application/alto-endpointcost+json,application/alto-error+json"
INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def need(tool, pkg):
    if shutil.which(tool):
        return
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", pkg], check=True)


def started(proc, log, prefix, seconds=60):
    """Waits for the start-up line `<prefix> <scheme>://<addr>` in the process's stdout log."""
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{' '.join(proc.args[:2])} exited with {proc.returncode}; see {log}")
        for line in open(log, errors="replace"):
            m = re.match(rf"^{prefix} (https?://\S+)\s*$", line)
            if m:
                return m.group(1)
        time.sleep(0.1)
    raise SystemExit(f"no '{prefix} ...' line from {' '.join(proc.args[:2])} in {seconds}s; see {log}")


def get(url, accept):
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10, context=INSECURE if url.startswith("https") else None) as r:
        return r.status, r.read()


def wait_ready(url, proc, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the shield exited with {proc.returncode} before it was ready")
        try:
            if get(url, "*/*")[0] == 200:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready in {seconds}s")


def metric(origin, name, resource):
    text = urllib.request.urlopen(origin + "/metrics", timeout=5).read().decode()
    total = 0.0
    for m in re.finditer(rf'^{name}\{{([^}}]*)\}}\s+([0-9.eE+]+)', text, re.M):
        if f'resource="{resource}"' in m.group(1):
            total += float(m.group(2))
    return total


NGINX_CONF = """
worker_processes 2;
worker_rlimit_nofile 16384;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    proxy_cache_path {run}/cache levels=1:2 keys_zone=alto:16m max_size=256m inactive=10m use_temp_path=off;
    proxy_temp_path {run}/proxy-temp;
    client_body_temp_path {run}/body-temp;
    upstream origin {{ server {origin_hostport}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} ssl http2 backlog=4096;
        ssl_certificate {run}/cert.pem;
        ssl_certificate_key {run}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        # the body is only usable in the cache key while it fits one buffer
        client_max_body_size 64k;
        client_body_buffer_size 64k;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {origin_hostport};
            proxy_set_header Accept-Encoding "";
            proxy_cache alto;
            proxy_cache_methods GET HEAD POST;
            proxy_cache_key "$request_method|$request_uri|$http_accept|$request_body";
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;
            proxy_cache_valid 200 30s;
            proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;
            proxy_cache_background_update on;
            # keep IRD-driven clients on the proxy
            sub_filter '{origin_url}' 'https://127.0.0.1:{port}';
            sub_filter_once off;
            sub_filter_types application/alto-directory+json;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""

SHIELD_CONF = """
[listen]
addr = "127.0.0.1:0"
cert = "{run}/cert.pem"
key = "{run}/key.pem"

[admin]
addr = "127.0.0.1:0"

[origin]
ird = "{origin}/directory"

[cache]
default_ttl = "30s"

[ecs]
mode = "{mode}"
"""
ECS_MODES = ["forward", "aggregate", "synthesize", "auto"]


def wrk(url, seconds, body_file=None, accept="*/*"):
    cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--timeout", "5s", "--latency", "-H", f"Accept: {accept}"]
    if body_file:
        cmd += ["-s", os.path.join(RUN, "post.lua")]
    env = dict(os.environ, BODY_FILE=body_file or "")
    out = subprocess.run(cmd + [url], capture_output=True, text=True, env=env, timeout=seconds + 30).stdout
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if (errs and sum(map(int, errs.groups()))) or non2xx:
        raise SystemExit(f"errors under load at {url}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    p99 = re.search(r"99%\s+([0-9.]+)(us|ms|s)", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]}


def h2load(url, seconds, body_file=None, accept="*/*"):
    cmd = ["h2load", "-t2", "-c16", "-m4", "-D", str(seconds), "-H", f"accept: {accept}"]
    if body_file:
        cmd += ["-d", body_file, "-H", f"content-type: {ECS_CT}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not m or int(m.group(3)) or int(m.group(4)) or (st and (int(st.group(3)) or int(st.group(4)))):
        raise SystemExit(f"errors under HTTP/2 load at {url}:\n{out}")
    return {"rps": float(re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", out).group(1))}


async def herd_once(host, port, req_bytes, n, timeout=30):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    barrier = asyncio.Barrier(n)
    lat, statuses = [], {}

    async def one():
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx, limit=1 << 22), timeout)
        except Exception:
            statuses["connect-error"] = statuses.get("connect-error", 0) + 1
            await barrier.wait()
            return
        await barrier.wait()
        t0 = time.perf_counter()
        try:
            w.write(req_bytes)
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
            status = int(head.split(b" ", 2)[1])
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if m:
                await asyncio.wait_for(r.readexactly(int(m.group(1))), timeout)
            else:
                await asyncio.wait_for(r.read(), timeout)
            lat.append((time.perf_counter() - t0) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
        except Exception:
            statuses["error"] = statuses.get("error", 0) + 1
        finally:
            w.close()

    await asyncio.gather(*[one() for _ in range(n)])
    lat.sort()
    return {"p90_ms": lat[int(len(lat) * 0.9)] if lat else float("nan"), "statuses": statuses}


def herd(port, path, body, n):
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
           f"Content-Type: {ECS_CT}\r\nAccept: {ECS_ACCEPT}\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return asyncio.run(herd_once("127.0.0.1", port, req, n))


def accepted_modes(origin):
    """The ecs.modes this build's `check-config` accepts, in documentation order."""
    modes = []
    for mode in ECS_MODES:
        path = f"{RUN}/check-{mode}.toml"
        with open(path, "w") as f:
            f.write(SHIELD_CONF.format(run=RUN, origin=origin, mode=mode))
        if subprocess.run([BIN, "check-config", path], capture_output=True, timeout=30).returncode == 0:
            modes.append(mode)
    return modes


def loadgen(target, origin, name, a):
    """One swarm run with the origin's counters; returns the figures of its summary."""
    out_dir = f"{RUN}/swarm-{name}"
    cmd = [BIN, "loadgen", "--target", target, "--insecure", "--origin-metrics", origin + "/metrics",
           "--peers", str(a.swarm_peers), "--epochs", str(a.swarm_epochs), "--epoch", a.swarm_epoch,
           "--policy", a.swarm_policy, "--map-clients", str(a.swarm_map_clients), "--connections", "64",
           "--out", out_dir]
    seconds = a.swarm_epochs * parse_seconds(a.swarm_epoch) + 120
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds)
    with open(f"{RUN}/swarm-{name}.log", "w") as f:
        f.write(r.stdout + "\n--- stderr ---\n" + r.stderr)
    if r.returncode != 0:
        raise SystemExit(f"loadgen against {name} failed ({r.returncode}): {r.stderr.strip()}")

    def num(pattern):
        m = re.search(pattern, r.stdout, re.M)
        return float(m.group(1)) if m else float("nan")

    e = a.swarm_epochs
    return {"origin req/epoch": num(r"^  requests: ([0-9.]+)") / e,
            "origin ECS req/epoch": num(r"^  endpoint-cost requests: ([0-9.]+)") / e,
            "origin pairs/epoch": num(r"^  endpoint-cost pairs: ([0-9.]+)") / e,
            "client req/epoch": num(r"^requests sent: ([0-9]+)") / e,
            "p50 ms": num(r"^latency ms: p50 ([0-9.]+)"),
            "p99 ms": num(r"^latency ms: .*p99 ([0-9.]+)"),
            "errors": num(r"^errors: ([0-9]+)")}


def parse_seconds(d):
    m = re.fullmatch(r"(\d+)(ms|s|m)", d)
    if not m:
        raise SystemExit(f"--swarm-epoch {d}: expected e.g. 1s, 500ms, 1m")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def swarm_section(origin, nginx_base, a, procs):
    """The swarm against the origin, nginx and a fresh shield per accepted ecs.mode, cold caches."""
    rows = [("origin (direct)", loadgen(origin + "/directory", origin, "origin", a))]
    rows.append(("nginx", loadgen(nginx_base + "/directory", origin, "nginx", a)))
    for mode in accepted_modes(origin):
        conf = f"{RUN}/shield-{mode}.toml"
        with open(conf, "w") as f:
            f.write(SHIELD_CONF.format(run=RUN, origin=origin, mode=mode))
        log = f"{RUN}/shield-{mode}.log"
        p = subprocess.Popen([BIN, "serve", "--config", conf], stdout=open(log, "w"),
                             stderr=open(f"{RUN}/shield-{mode}.err", "w"))
        procs.append(p)
        try:
            url = started(p, log, "listening on")
            wait_ready(started(p, log, "admin on") + "/readyz", p)
            rows.append((f"altoshield {mode}", loadgen(url + "/directory", origin, f"altoshield-{mode}", a)))
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    cols = ["client req/epoch", "origin req/epoch", "origin ECS req/epoch", "origin pairs/epoch", "p50 ms",
            "p99 ms", "errors"]
    print(f"swarm: {a.swarm_peers} peers, policy {a.swarm_policy}, {a.swarm_epochs} epochs of {a.swarm_epoch}, "
          f"{a.swarm_map_clients} map clients, cold caches; origin delay {a.delay_ms} ms")
    widths = [max(len(c), 8) + 2 for c in cols]
    print(f"{'target':22}" + "".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
    for name, fig in rows:
        print(f"{name:22}" + "".join(f"{fig[c]:{w}.1f}" for c, w in zip(cols, widths)))
    print(f"(per-run summaries, timeline.csv and timeline.svg in {RUN}/swarm-*)")
    print()


def main():
    global RUN
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--herd", type=int, default=1000)
    ap.add_argument("--herds", type=int, default=3)
    ap.add_argument("--delay-ms", type=int, default=20)
    ap.add_argument("--swarm-peers", type=int, default=500)
    ap.add_argument("--swarm-epochs", type=int, default=10)
    ap.add_argument("--swarm-epoch", default="1s")
    ap.add_argument("--swarm-policy", choices=["all", "new"], default="all")
    ap.add_argument("--swarm-map-clients", type=int, default=20)
    ap.add_argument("--no-swarm", action="store_true", help="only the wrk/h2load/herd figures")
    a = ap.parse_args()
    if not os.access(BIN, os.X_OK):
        raise SystemExit("build first: cargo build --release")
    need("nginx", "nginx")
    need("wrk", "wrk")
    need("h2load", "nghttp2-client")
    RUN = tempfile.mkdtemp(prefix="vs-nginx-")
    os.chmod(RUN, 0o755)  # nginx workers run as an unprivileged user
    for d in ("cache", "proxy-temp", "body-temp"):
        os.makedirs(os.path.join(RUN, d))
        os.chmod(os.path.join(RUN, d), 0o777)
    procs = []

    def stop_all():
        pidfile = os.path.join(RUN, "nginx.pid")
        if os.path.exists(pidfile):
            try:
                os.kill(int(open(pidfile).read().strip()), signal.SIGQUIT)
            except (ProcessLookupError, ValueError):
                pass
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(1)))
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", f"{RUN}/key.pem", "-out", f"{RUN}/cert.pem", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
        with open(f"{RUN}/post.lua", "w") as f:
            f.write('local f = assert(io.open(os.getenv("BODY_FILE"), "rb")); wrk.method = "POST"; wrk.body = f:read("*a"); f:close()\n'
                    f'wrk.headers["Content-Type"] = "{ECS_CT}"\n')
        # the origin
        log = f"{RUN}/origin.log"
        procs.append(subprocess.Popen([BIN, "origin", "--generate", "--pids", "200", "--prefixes-per-pid", "20", "--seed", "1",
                                       "--delay-ms", str(a.delay_ms), "--listen", "127.0.0.1:0"],
                                      stdout=open(log, "w"), stderr=open(f"{RUN}/origin.err", "w")))
        origin = started(procs[-1], log, "origin listening on")
        origin_hostport = urllib.parse.urlsplit(origin).netloc
        # nginx
        pn = free_port()
        with open(f"{RUN}/nginx.conf", "w") as f:
            f.write(NGINX_CONF.format(run=RUN, port=pn, origin_hostport=origin_hostport, origin_url=origin))
        subprocess.run(["nginx", "-c", f"{RUN}/nginx.conf", "-e", f"{RUN}/nginx-error.log"], check=True)
        # the shield
        with open(f"{RUN}/shield.toml", "w") as f:
            f.write(SHIELD_CONF.format(run=RUN, origin=origin, mode="forward"))
        log = f"{RUN}/shield.log"
        procs.append(subprocess.Popen([BIN, "serve", "--config", f"{RUN}/shield.toml"],
                                      stdout=open(log, "w"), stderr=open(f"{RUN}/shield.err", "w")))
        shield = started(procs[-1], log, "listening on")
        admin = started(procs[-1], log, "admin on")
        wait_ready(admin + "/readyz", procs[-1])
        if not a.no_swarm:
            swarm_section(origin, f"https://127.0.0.1:{pn}", a, procs)

        targets = {"altoshield": shield, "nginx": f"https://127.0.0.1:{pn}"}
        paths, ecs_ids = {}, {}
        for name, base in targets.items():
            ird_url = base + "/directory"
            ird = json.loads(get(ird_url, "application/alto-directory+json,application/alto-error+json")[1])
            res, cost_types = ird["resources"], ird.get("meta", {}).get("cost-types", {})
            nm_id = ird["meta"].get("default-alto-network-map") or next(
                k for k, v in res.items() if v["media-type"] == NM and "accepts" not in v)
            ecs = [k for k, v in res.items() if v.get("accepts") == ECS_CT]
            if not ecs:
                raise SystemExit(f"{name}'s IRD has no endpoint cost service")
            ordinal = [k for k in ecs if any(cost_types.get(n, {}).get("cost-mode") == "ordinal"
                                             for n in res[k].get("capabilities", {}).get("cost-type-names", []))]
            ecs_ids[name] = (ordinal or ecs)[0]
            uris = [urllib.parse.urljoin(ird_url, res[k]["uri"]) for k in (nm_id, ecs_ids[name])]
            if not all(u.startswith(base) for u in uris):
                print(f"warning: {name}'s IRD points outside itself: {uris}", file=sys.stderr)
            paths[name] = [urllib.parse.urlsplit(u).path for u in uris]

        netmap = json.loads(get(origin + paths["nginx"][0], NM + ",application/alto-error+json")[1])
        hosts = []
        for groups in netmap["network-map"].values():
            for p in groups.get("ipv4", []):
                net = ipaddress.ip_network(p, strict=False)
                h = str(net.network_address + 1)
                if net.prefixlen >= 8 and h not in hosts:
                    hosts.append(h)
        if len(hosts) < 41 + 2 * a.rounds * a.herds + 1:
            raise SystemExit("the generated network map has too few distinct IPv4 prefixes")

        def ecs_body(src_idx, n_dsts):
            return json.dumps({"cost-type": {"cost-mode": "ordinal", "cost-metric": "routingcost"},
                               "endpoints": {"srcs": ["ipv4:" + hosts[src_idx % len(hosts)]],
                                             "dsts": ["ipv4:" + h for h in hosts[1:1 + n_dsts]]}}).encode()

        body_file = f"{RUN}/ecs.json"
        open(body_file, "wb").write(ecs_body(0, 40))
        rows, herd_no = {}, 0
        for r in range(a.rounds):
            for name, base in targets.items():
                nm_path, ecs_path = paths[name]
                wrk(base + nm_path, 1, accept=NM)  # warm
                rows.setdefault(("get_hit rps", name), []).append(wrk(base + nm_path, a.duration, accept=NM)["rps"])
                wrk(base + ecs_path, 1, body_file, ECS_ACCEPT)
                post = wrk(base + ecs_path, a.duration, body_file, ECS_ACCEPT)
                rows.setdefault(("post_hit rps", name), []).append(post["rps"])
                rows.setdefault(("post_hit p99 ms", name), []).append(post["p99_ms"])
                rows.setdefault(("get_hit_h2 rps", name), []).append(h2load(base + nm_path, a.duration, accept=NM)["rps"])
                rows.setdefault(("post_hit_h2 rps", name), []).append(
                    h2load(base + ecs_path, a.duration, body_file, ECS_ACCEPT)["rps"])
                port = int(urllib.parse.urlsplit(base).port)
                origin_reqs, adds = [], []
                for _ in range(a.herds):
                    herd_no += 1
                    cold = ecs_body(41 + herd_no, 40)  # a source never asked before: a cold key
                    before = metric(origin, "altoshield_origin_served_total", ecs_ids["nginx"])
                    c = herd(port, ecs_path, cold, a.herd)
                    time.sleep(0.3)
                    origin_reqs.append(metric(origin, "altoshield_origin_served_total", ecs_ids["nginx"]) - before)
                    w = herd(port, ecs_path, cold, a.herd)
                    if c["statuses"].get(200) != a.herd or w["statuses"].get(200) != a.herd:
                        raise SystemExit(f"{name}: herd answers {c['statuses']} then {w['statuses']}")
                    adds.append(c["p90_ms"] - w["p90_ms"] - a.delay_ms)
                rows.setdefault(("herd origin requests", name), []).append(statistics.median(origin_reqs))
                rows.setdefault(("herd adds ms (p90)", name), []).append(statistics.median(adds))
        figures = ["get_hit rps", "post_hit rps", "post_hit p99 ms", "get_hit_h2 rps", "post_hit_h2 rps",
                   "herd origin requests", "herd adds ms (p90)"]
        print(f"{'figure':24} {'altoshield':>12} {'nginx':>12} {'ratio':>8}")
        for fig in figures:
            s = statistics.median(rows[(fig, "altoshield")])
            n = statistics.median(rows[(fig, "nginx")])
            print(f"{fig:24} {s:12.1f} {n:12.1f} {s / n if n else float('nan'):8.2f}")
        print(f"(medians over {a.rounds} rounds; herds of {a.herd}, {a.herds} per round; origin delay {a.delay_ms} ms; "
              f"'herd adds' = cold p90 - cached p90 - origin delay, client-side, noisy at this scale; logs in {RUN})")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
