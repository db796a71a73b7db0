"""What operators see and ask of synchrod, shared by the monitor API and the
CLI: the views of sources and jobs, the status report, the actions."""
