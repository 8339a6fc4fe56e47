"""A throw-away CA, a server certificate for 127.0.0.1/localhost, and the kubeconfig.

Generated with the openssl CLI (the Python standard library cannot make certificates) into a
private temporary directory that the caller removes at exit.
"""

import base64
import os
import secrets
import subprocess


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certs(workdir):
    """Returns (ca_pem_path, cert_path, key_path)."""
    os.chmod(workdir, 0o700)
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "2", "-subj", "/CN=kubeemu-ca", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=workdir)
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=kube-apiserver", cwd=workdir)
    with open(os.path.join(workdir, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    _run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf", cwd=workdir)
    return (os.path.join(workdir, "ca.crt"), os.path.join(workdir, "server.crt"),
            os.path.join(workdir, "server.key"))


def make_client_cert(workdir, common_name="kubernetes-admin", organization="system:masters"):
    """A client certificate signed by the CA (CN = user, O = group), for mTLS kubeconfigs.
    Returns (cert_path, key_path)."""
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "client.key", "-out", "client.csr",
         "-subj", f"/O={organization}/CN={common_name}", cwd=workdir)
    with open(os.path.join(workdir, "client-ext.cnf"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=clientAuth\n")
    _run("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "client.crt", "-days", "2", "-extfile", "client-ext.cnf",
         cwd=workdir)
    return os.path.join(workdir, "client.crt"), os.path.join(workdir, "client.key")


def new_token():
    return secrets.token_hex(24)


def _b64_file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def write_kubeconfig(path, url, ca_path, token=None, client_cert=None):
    """token: a bearer token; client_cert: (cert_path, key_path) for mTLS instead."""
    ca_b64 = _b64_file(ca_path)
    if client_cert:
        user = (f"    client-certificate-data: {_b64_file(client_cert[0])}\n"
                f"    client-key-data: {_b64_file(client_cert[1])}\n")
    else:
        user = f"    token: {token}\n"
    # JSON is valid YAML; every kubeconfig reader accepts it, but a YAML layout is friendlier.
    text = (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: emulator\n"
        "  cluster:\n"
        f"    server: {url}\n"
        f"    certificate-authority-data: {ca_b64}\n"
        "users:\n"
        "- name: emulator-admin\n"
        "  user:\n"
        f"{user}"
        "contexts:\n"
        "- name: emulator\n"
        "  context:\n"
        "    cluster: emulator\n"
        "    user: emulator-admin\n"
        "    namespace: default\n"
        "current-context: emulator\n"
        "preferences: {}\n")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
