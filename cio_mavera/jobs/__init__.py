"""The three jobs, one room each, built the same way: `campaigns` (job 1), `audiences` (job 2),
`retention` (job 3). What they share: the run context (`context`), the credits section
(`credits`) and small report helpers (`report_parts`)."""
