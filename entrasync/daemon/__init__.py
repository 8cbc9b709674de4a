"""`entrasync run`: the long-running service (scheduling, leader election, health, metrics,
systemd integration). `entrasync.daemon.service` has the moving parts, `runner` the main
thread. Kept import-light: `entrasync status` imports `daemon.state` only."""
