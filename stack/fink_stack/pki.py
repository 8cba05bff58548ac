"""Certificates for the local kube-apiserver and Kafka, and the kubeconfig that uses them.

One throw-away CA signs the apiserver's serving certificate, an admin client
certificate in group system:masters, and Kafka's serving certificate (its
SASL_SSL listeners); a separate RSA key pair signs service account tokens. They
are made once per state directory and reused, so a kubeconfig or a CA file
handed out earlier keeps working across `down`/`up`.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import threading
from collections.abc import Iterable
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
SERVICE_IP = "10.0.0.1"  # first address of --service-cluster-ip-range
SERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


# Kafka and the apiserver are prepared in parallel threads and both need the CA
_LOCK = threading.Lock()


def ensure_pki(pki: Path) -> None:
    """Create the CA, serving, admin and service-account keys unless present."""
    with _LOCK:
        _ensure_pki(pki)


def _ensure_pki(pki: Path) -> None:
    if (pki / "complete").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca_cert = _certificate(
        subject=_name("fink-stack-ca"), issuer=None, key=ca_key, signer=ca_key, ca=True
    )
    _write(pki, "ca", ca_key, ca_cert)

    server_key = _new_key()
    server_cert = _certificate(
        subject=_name("kube-apiserver"),
        issuer=ca_cert,
        key=server_key,
        signer=ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        alt_names=[x509.DNSName(n) for n in SERVER_NAMES]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", SERVICE_IP)],
    )
    _write(pki, "apiserver", server_key, server_cert)

    admin_key = _new_key()
    admin_cert = _certificate(
        subject=_name("fink-admin", organisation="system:masters"),
        issuer=ca_cert,
        key=admin_key,
        signer=ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    _write(pki, "admin", admin_key, admin_cert)

    sa_key = _new_key()
    (pki / "sa.key").write_bytes(_private_bytes(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for path in pki.glob("*.key"):
        path.chmod(0o600)
    (pki / "complete").write_text("ok\n")


def ensure_node_pki(pki: Path, node_name: str, node_ip: str) -> None:
    """Add what the real node needs to an existing PKI, signed by the same CA.

    The apiserver's serving certificate gains the pod network's host address
    (pods reach the apiserver there); the apiserver gets a client certificate
    for the kubelet's API (logs, exec), and the kubelet one for the apiserver,
    in the identity the Node authorizer expects (system:node:<name>). Keys and
    certificates made earlier stay, so kubeconfigs handed out keep working.
    """
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    serving = x509.load_pem_x509_certificate((pki / "apiserver.crt").read_bytes())
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if ipaddress.ip_address(node_ip) not in names.get_values_for_type(x509.IPAddress):
        key = _new_key()
        ips = ("127.0.0.1", SERVICE_IP, node_ip)
        cert = _certificate(
            subject=_name("kube-apiserver"),
            issuer=ca_cert,
            key=key,
            signer=ca_key,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            alt_names=[x509.DNSName(n) for n in SERVER_NAMES]
            + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips],
        )
        _write(pki, "apiserver", key, cert)
    clients = {
        "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
        f"node-{node_name}": (f"system:node:{node_name}", "system:nodes"),
    }
    for stem, (common_name, group) in clients.items():
        if (pki / f"{stem}.crt").exists():
            continue
        key = _new_key()
        cert = _certificate(
            subject=_name(common_name, organisation=group),
            issuer=ca_cert,
            key=key,
            signer=ca_key,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        _write(pki, stem, key, cert)
    for path in pki.glob("*.key"):
        path.chmod(0o600)


KAFKA_SERVER = "kafka-server"  # kafka-server.{crt,key,pem}: the SASL_SSL listeners' certificate


def ensure_kafka_pki(pki: Path, addresses: Iterable[str]) -> Path:
    """Kafka's serving certificate for these IP addresses, signed by the stack's CA.

    Clients check the broker's name (librdkafka and the Java client both verify
    the host by default), so the certificate names every address a listener
    advertises, and localhost. It is made again only when an address is missing
    (e.g. the pod network appeared). Returns the PEM key store Kafka reads: the
    private key in PKCS#8 followed by the certificate (`ssl.keystore.type=PEM`).
    """
    wanted = [ipaddress.ip_address(a) for a in addresses]
    with _LOCK:
        _ensure_pki(pki)
        store = pki / f"{KAFKA_SERVER}.pem"
        crt = pki / f"{KAFKA_SERVER}.crt"
        if store.exists() and crt.exists():
            cert = x509.load_pem_x509_certificate(crt.read_bytes())
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            if all(ip in names.get_values_for_type(x509.IPAddress) for ip in wanted):
                return store
        ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        key = _new_key()
        cert = _certificate(
            subject=_name("kafka"),
            issuer=ca_cert,
            key=key,
            signer=ca_key,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            alt_names=[x509.DNSName("localhost")] + [x509.IPAddress(ip) for ip in wanted],
        )
        _write(pki, KAFKA_SERVER, key, cert)
        pkcs8 = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        store.write_bytes(pkcs8 + cert.public_bytes(serialization.Encoding.PEM))
        for path in (store, pki / f"{KAFKA_SERVER}.key"):
            path.chmod(0o600)
        return store


def write_kubeconfig(path: Path, pki: Path, server: str, user: str = "admin") -> None:
    """A self-contained kubeconfig (certificates inlined) for a user of the PKI (default admin)."""

    def inline(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "fink-local",
                "cluster": {"server": server, "certificate-authority-data": inline("ca.crt")},
            }
        ],
        "users": [
            {
                "name": "fink-admin",
                "user": {
                    "client-certificate-data": inline(f"{user}.crt"),
                    "client-key-data": inline(f"{user}.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "fink-local",
                "context": {"cluster": "fink-local", "user": "fink-admin", "namespace": "default"},
            }
        ],
        "current-context": "fink-local",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str, organisation: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attributes)


def _certificate(
    *,
    subject: x509.Name,
    issuer: x509.Certificate | None,
    key: rsa.RSAPrivateKey,
    signer: rsa.RSAPrivateKey,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    alt_names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _private_bytes(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _write(pki: Path, stem: str, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
    (pki / f"{stem}.key").write_bytes(_private_bytes(key))
    (pki / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
