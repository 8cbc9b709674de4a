"""One sync cycle: read Entra into the mirror, plan, guard, apply, record the run."""
