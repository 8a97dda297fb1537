#!/usr/bin/env python3
"""Time to detect and to mitigate: a release levee learns 10 s of ordinary traffic (about
20 req/s from 30 clients through a trusted loopback proxy), then three
times a flood of one tool's user agent from 10,000 sources (8 threads)
until GET /admin/shield/auto shows the event and then its rule in force;
prints how long each took, what 50 more flood requests got, and how long
after the flood stopped the event ended and its rule was lifted
(quiet_for = 3 s).
Starts its own server on port 0 and stops it.

Usage: bench/time-to-detect.py [BIN_DIR]   (default: target/release)
"""
import http.client, json, sys, threading, time, subprocess, tempfile, os, re
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
bin_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "release")
d = tempfile.mkdtemp()
open(f"{d}/levee.toml","w").write(f'''[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "{d}/data"
[client_ip]
trusted_proxies = ["127.0.0.1/32"]
[auto_mitigation]
learn_for = "10s"
quiet_for = "3s"
[functions.hello]
command = ["{bin_dir}/hello-fn"]
code = "{root}/examples/hello/code"
[[routes]]
route = "GET /f"
function = "hello"
''')
tok = "ttd-token-1234567890abcdef"
p = subprocess.Popen([f"{bin_dir}/levee","serve","--config",f"{d}/levee.toml"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ,"LEVEE_ADMIN_TOKEN":tok,"LEVEE_LOG":"warn"}, text=True)
edge = admin = None
while not (edge and admin):
    line = p.stdout.readline()
    m = re.match(r"levee: (edge|admin) listening on http://(\S+)", line)
    if m:
        if m.group(1) == "edge": edge = m.group(2)
        else: admin = m.group(2)
def get(ip, ua):
    c = http.client.HTTPConnection(edge, timeout=10); c.request("GET","/f",headers={"x-forwarded-for":ip,"user-agent":ua}); c.getresponse().read(); c.close()
def report():
    c = http.client.HTTPConnection(admin, timeout=10); c.request("GET","/admin/shield/auto",headers={"authorization":f"Bearer {tok}"}); r = json.loads(c.getresponse().read()); c.close(); return r
stop = False; flood = False
def baseline():
    i = 0
    while not stop:
        get(f"10.1.{i%10}.{i%3}", ["Mozilla/5.0 Firefox/133.0","Mozilla/5.0 Safari/605","Boto3/1.43"][i%3]); i += 1; time.sleep(0.05)
def attacker(t):
    i = t
    while flood:
        get(f"172.16.{i%250}.{(i//250)%40}", "python-requests/2.32"); i += 8
threading.Thread(target=baseline, daemon=True).start()
while report().get("learning", True): time.sleep(0.2)
for round in range(3):
    time.sleep(4)
    flood = True; start = time.time()
    ts = [threading.Thread(target=attacker, args=(t,), daemon=True) for t in range(8)]
    [t.start() for t in ts]
    n = len(report()["events"])
    while len(report()["events"]) == n and time.time() - start < 20: time.sleep(0.05)
    seen = time.time() - start
    while report()["events"][-1]["mitigation"] not in ("enforced", "none") and time.time() - start < 20: time.sleep(0.05)
    enforced = time.time() - start
    # What the flood gets once the rule is in force, from one more client.
    c = http.client.HTTPConnection(edge, timeout=10); codes = []
    for k in range(50):
        c.request("GET", "/f", headers={"x-forwarded-for": f"172.31.0.{k}", "user-agent": "python-requests/2.32"}); r = c.getresponse(); r.read(); codes.append(r.status)
    c.close()
    ev = report()["events"][-1]
    flood = False; [t.join() for t in ts]
    stopped = time.time()
    while report()["events"][-1]["state"] != "ended": time.sleep(0.05)
    lifted = time.time() - stopped
    print(f"round {round}: event visible {seen:.2f} s, rule in force {enforced:.2f} s after the flood began ({ev['mitigation']}); then {codes.count(429)} of 50 flood requests got 429; peak {ev['peak_rps']:.0f} rps vs reference {ev['reference_rps']:.1f}; signature {(ev['signature'] or {}).get('value')!r} coverage {(ev['signature'] or {}).get('coverage')}; ended, rule lifted, {lifted:.1f} s after the flood stopped")
stop = True; p.terminate(); p.wait()
subprocess.run(["rm", "-rf", d])
