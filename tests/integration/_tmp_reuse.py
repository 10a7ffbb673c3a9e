import sgtest, socket, time, os
from sgtest import Gateway, Client
gw = sgtest.track(Gateway(name="reuse"))
fails = {"listen":0, "metrics":0}
for cyc in range(12):
    gw.start()
    held = [Client(gw.port) for _ in range(30)]
    ms = []
    for _ in range(10):
        m = socket.create_connection(("127.0.0.1", gw.metrics_port)); ms.append(m)
    gw.kill9()
    for name, port in (("metrics", gw.metrics_port), ("listen", gw.port)):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port)); s.listen(1)
        except OSError as e:
            fails[name] += 1
        s.close()
    for c in held: c.close()
    for m in ms: m.close()
print("bind failures right after kill -9 in 12 cycles:", fails)
