"""Scale-out tests: several ``agent-tui serve`` processes on one PostgreSQL and one Redis."""
