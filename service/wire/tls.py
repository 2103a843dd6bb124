"""TLS for both ends: the contexts from ``config.ClientTLS`` / ``ServerTLS``, and what a TLS failure means."""

from __future__ import annotations

import ssl
from typing import Optional

from ..config import ClientTLS, ServerTLS

__all__ = ["client_tls_context", "server_tls_context", "explain_tls_error", "TLS_ALERT_PROTOCOL_VERSION"]

#: A fatal TLS alert (protocol_version): what a TLS client can read from a server without TLS.
TLS_ALERT_PROTOCOL_VERSION = b"\x15\x03\x01\x00\x02\x02\x46"


_TLS_HINTS = (
    ("wrong version number", "the server does not speak TLS on this port (a plain Thrift server?)"),
    ("alert protocol version", "the server does not speak TLS on this port (a plain Thrift server?)"),
    ("certificate required", "the server requires a client certificate (ClientTLS cert_file and key_file)"),
    ("unknown ca", "the server does not trust this client certificate's CA"),
    ("eof occurred in violation of protocol", "the server ended the TLS connection at once: does it require a "
                                              "client certificate (ClientTLS cert_file and key_file)?"),
    ("certificate verify failed", "the server's certificate is not trusted by ClientTLS.ca_file (or does not "
                                  "name this host: ClientTLS.server_hostname)"),
)


def explain_tls_error(error: BaseException) -> Optional[str]:
    """What a TLS failure (in ``error`` or the cause Thrift keeps in ``inner``) means, if known."""
    for candidate in (error, getattr(error, "inner", None), error.__cause__):
        if isinstance(candidate, ssl.SSLError):
            text = str(candidate).lower()
            for needle, hint in _TLS_HINTS:
                if needle in text:
                    return hint
    return None


def client_tls_context(tls: ClientTLS) -> ssl.SSLContext:
    """Verifies the server (certificate and host name); presents a client certificate if given."""
    context = _default_context(ssl.Purpose.SERVER_AUTH, tls.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file:
        _load_pair(context, tls.cert_file, tls.key_file)
    return context


def _default_context(purpose: ssl.Purpose, ca_file: Optional[str]) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(purpose, cafile=ca_file)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"cannot load the TLS CA file {ca_file!r}: {error}") from error


def _load_pair(context: ssl.SSLContext, cert_file: str, key_file: Optional[str]) -> None:
    """Loads a certificate and its key; the error names both files (ssl's own says only "PEM lib")."""
    try:
        context.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"cannot load the TLS certificate {cert_file!r} with key {key_file!r}: {error}") from error


def server_tls_context(tls: ServerTLS) -> ssl.SSLContext:
    """The server's context; with a client CA, clients without a certificate it signed are refused."""
    context = _default_context(ssl.Purpose.CLIENT_AUTH, tls.client_ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(context, tls.cert_file, tls.key_file)
    context.verify_mode = ssl.CERT_REQUIRED if tls.client_ca_file else ssl.CERT_NONE
    return context
