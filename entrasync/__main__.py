from entrasync.cli import run

run()
