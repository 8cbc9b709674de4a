"""`entrasync run`: the long-running service (scheduling, leader election, health, metrics,
systemd integration). `entrasync.daemon.service` wires the parts (`leadership`, `cycle_job`,
`heartbeat`, `chores`, `health_view`), `runner` is the main thread. What the daemon keeps in
the store is in `entrasync.store.daemon_state` (what `entrasync status` reads)."""
