"""SMTP sessions on aiosmtpd (with HAT/RAT) and SMTP delivery on aiosmtplib."""
