"""SMTP sessions on aiosmtpd (with HAT/RAT) and SMTP delivery on a pipelining client of our own."""
