"""The parties as network services: a plain-data wire format (wire.py), mutually authenticated TLS 1.3
links with deadlines and heartbeats (tls.py, link.py, certs.py), a Channel over links (channel.py), and
a delaying proxy for latency tests (proxy.py)."""
