//! The OVSDB client over TLS (`ssl:` remotes) against a real ovsdb-server listening on
//! `pssl:`: mutual authentication with certificates made here (rcgen) and by OVS's own
//! `ovs-pki`, refusal of a server or client that the other side's CA did not sign, and the
//! server-name check with the switch that turns it off.
//!
//! Every case bounds each connection attempt and request with a timeout, so a handshake that
//! stalls fails the test instead of hanging it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ovn_vpc::sandbox::{Sandbox, SslFiles};
use ovn_vpc_tests::nbctl;
use ovsdb::{Client, ConnectOptions, Datum, Error, Operation, TlsSettings};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

const NB: &str = "OVN_Northbound";
const LIMIT: Duration = Duration::from_secs(20);

/// A certificate authority made for the test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A certificate for `sans` (IP addresses or DNS names) signed by this CA, as
    /// (certificate PEM, private key PEM).
    fn issue(&self, common_name: &str, sans: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Key, certificate and CA certificate written to `dir` as `<name>-{key,cert,ca}.pem`.
fn write_files(dir: &Path, name: &str, (cert, key): &(String, String), ca: &Ca) -> SslFiles {
    let write = |suffix: &str, text: &str| {
        let p = dir.join(format!("{name}-{suffix}.pem"));
        std::fs::write(&p, text).unwrap();
        p
    };
    SslFiles {
        key: write("key", key),
        cert: write("cert", cert),
        ca: write("ca", &ca.pem),
    }
}

fn settings(files: &SslFiles) -> TlsSettings {
    TlsSettings::from_files(&files.key, &files.cert, &files.ca).unwrap()
}

/// Connects over TLS within [`LIMIT`]; the connection task is spawned.
async fn connect(remote: &str, tls: TlsSettings) -> Result<Client, Error> {
    let opts = ConnectOptions {
        tls: Some(tls),
        connect_timeout: LIMIT,
        ..ConnectOptions::default()
    };
    let (client, connection) = tokio::time::timeout(LIMIT * 2, ovsdb::connect_with(remote, &opts))
        .await
        .expect("connect_with outlived its own timeout")?;
    tokio::spawn(connection);
    Ok(client)
}

/// `list_dbs` within [`LIMIT`] (a test failure, never a hang, when there is no answer).
async fn list_dbs(client: &Client) -> Result<Vec<String>, Error> {
    tokio::time::timeout(LIMIT, client.list_dbs())
        .await
        .expect("no answer to list_dbs within the limit")
}

/// Inserts a logical switch named `name` (no client-side schema fetch first, so the insert is
/// the first request on the connection).
async fn add_switch(client: &Client, name: &str) -> Result<(), Error> {
    let ops = [Operation::Insert {
        table: "Logical_Switch".into(),
        row: [("name".to_string(), Datum::atom(name))]
            .into_iter()
            .collect(),
        uuid_name: None,
    }];
    tokio::time::timeout(LIMIT, client.transact_unchecked(NB, &ops))
        .await
        .expect("no answer to transact within the limit")
        .map(drop)
}

/// The logical switches, read over the unix socket by ovn-nbctl (an independent witness).
fn switches(sandbox: &Sandbox) -> String {
    nbctl(&sandbox.nb_remote(), &["ls-list"])
}

fn tls_message(e: &Error) -> &str {
    match e {
        Error::Tls(m) => m,
        other => panic!("expected Error::Tls, got {other:?}"),
    }
}

/// The PKI most cases share: a CA that signs the server's and the client's certificates, and
/// an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    other_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: Ca::new("ovn-vpc test CA"),
            other_ca: Ca::new("unrelated CA"),
        }
    }

    /// The server's files: a certificate for `sans` from the CA; clients must be signed by the
    /// CA too.
    fn server(&self, sans: &[&str]) -> SslFiles {
        let issued = self.ca.issue("ovsdb-server", sans);
        write_files(self.dir.path(), "server", &issued, &self.ca)
    }

    /// A client's files: its certificate signed by `signer`, trusting `trusted` for the server.
    fn client(&self, name: &str, signer: &Ca, trusted: &Ca) -> SslFiles {
        let issued = signer.issue(name, &[name]);
        write_files(self.dir.path(), name, &issued, trusted)
    }
}

fn sandbox_with_ssl(server: SslFiles) -> (Sandbox, String) {
    let sandbox = Sandbox::builder().nb_ssl(server).start().unwrap();
    let remote = sandbox.nb_ssl_remote().expect("the NB listens for TLS");
    assert!(remote.starts_with("ssl:127.0.0.1:"), "{remote}");
    (sandbox, remote)
}

#[tokio::test]
async fn mutual_tls_with_name_verification_reads_and_writes() {
    let pki = Pki::new();
    let (sandbox, remote) = sandbox_with_ssl(pki.server(&["127.0.0.1", "localhost"]));
    let client_files = pki.client("vpc-controller", &pki.ca, &pki.ca);
    let tls = settings(&client_files);
    assert!(tls.verifies_hostname());

    // By IP address: the certificate's IP SAN is checked.
    let c = connect(&remote, tls.clone()).await.unwrap();
    let dbs = list_dbs(&c).await.unwrap();
    assert!(dbs.contains(&NB.to_string()), "{dbs:?}");
    add_switch(&c, "over-tls").await.unwrap();
    assert!(switches(&sandbox).contains("(over-tls)"));

    // By DNS name: the certificate's DNS SAN is checked.
    let port = remote.rsplit(':').next().unwrap();
    let by_name = connect(&format!("ssl:localhost:{port}"), tls.clone())
        .await
        .unwrap();
    add_switch(&by_name, "by-name").await.unwrap();
    assert!(switches(&sandbox).contains("(by-name)"));

    // The same settings from PEM text in memory.
    let read = |p: &PathBuf| std::fs::read(p).unwrap();
    let from_pem = TlsSettings::from_pem(
        &read(&client_files.key),
        &read(&client_files.cert),
        &read(&client_files.ca),
    )
    .unwrap();
    let c = connect(&remote, from_pem).await.unwrap();
    c.echo().await.unwrap();
}

#[tokio::test]
async fn a_server_our_ca_did_not_sign_is_refused_even_without_the_name_check() {
    let pki = Pki::new();
    let (sandbox, remote) = sandbox_with_ssl(pki.server(&["127.0.0.1"]));
    // Our certificate is fine for the server; we trust the wrong CA for the server's.
    let files = pki.client("trusts-other", &pki.ca, &pki.other_ca);

    for tls in [settings(&files), settings(&files).verify_hostname(false)] {
        let e = connect(&remote, tls).await.unwrap_err();
        let m = tls_message(&e);
        assert!(m.contains("invalid peer certificate"), "{m}");
        assert!(m.contains("not signed by the configured CA"), "{m}");
    }
    assert!(switches(&sandbox).trim().is_empty());
}

#[tokio::test]
async fn the_server_refuses_a_client_certificate_its_ca_did_not_sign() {
    let pki = Pki::new();
    let (sandbox, remote) = sandbox_with_ssl(pki.server(&["127.0.0.1"]));
    // We trust the server, but our certificate comes from the unrelated CA.
    let files = pki.client("intruder", &pki.other_ca, &pki.ca);
    let log_before = std::fs::read_to_string(sandbox.nb_servers()[0].log_path()).unwrap();

    // With TLS 1.2 the handshake fails; with TLS 1.3 the client finishes its side first and
    // the server's refusal arrives as an alert on the first read. Either way no request runs.
    match connect(&remote, settings(&files)).await {
        Err(e) => {
            let m = tls_message(&e);
            assert!(m.contains("refused the handshake"), "{m}");
        }
        Ok(c) => {
            let e = add_switch(&c, "intruder").await.unwrap_err();
            assert!(e.is_connection_lost(), "{e:?}");
        }
    }
    assert!(!switches(&sandbox).contains("intruder"));
    // The server says why.
    let log = std::fs::read_to_string(sandbox.nb_servers()[0].log_path()).unwrap();
    let new = &log[log_before.len()..];
    assert!(
        new.contains("certificate verify failed") || new.contains("unknown ca"),
        "server log does not show the refused certificate:\n{new}"
    );
}

#[tokio::test]
async fn the_server_refuses_a_client_without_a_certificate() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = Pki::new();
    let (sandbox, remote) = sandbox_with_ssl(pki.server(&["127.0.0.1"]));
    let port: u16 = remote.rsplit(':').next().unwrap().parse().unwrap();

    // A TLS client that trusts the right CA but has no certificate to present (TlsSettings
    // always presents one, so this one is built by hand), once per TLS version: in TLS 1.2 the
    // handshake fails, in TLS 1.3 the refusal comes after the client's side of it.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.pem.as_bytes()).unwrap())
        .unwrap();
    let roots = Arc::new(roots);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await?;
            tls.write_all(br#"{"id":1,"method":"list_dbs","params":[]}"#)
                .await?;
            let mut reply = Vec::new();
            tls.read_to_end(&mut reply).await?;
            Ok::<_, std::io::Error>(reply)
        };
        let outcome = tokio::time::timeout(LIMIT, attempt)
            .await
            .expect("the refused connection hung");
        match outcome {
            Err(e) => {
                let tls = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<rustls::Error>())
                    .unwrap_or_else(|| panic!("{version:?}: not a TLS error: {e:?}"));
                assert!(
                    matches!(tls, rustls::Error::AlertReceived(_)),
                    "{version:?}: expected the server's alert, got {tls:?}"
                );
            }
            Ok(reply) => panic!(
                "{version:?}: the server answered a client without a certificate: {:?}",
                String::from_utf8_lossy(&reply)
            ),
        }
    }
    assert!(switches(&sandbox).trim().is_empty());
}

#[tokio::test]
async fn the_server_name_is_checked_unless_turned_off() {
    let pki = Pki::new();
    // A certificate that names another host only.
    let (sandbox, remote) = sandbox_with_ssl(pki.server(&["ovsdb.example"]));
    let files = pki.client("vpc-controller", &pki.ca, &pki.ca);

    let e = connect(&remote, settings(&files)).await.unwrap_err();
    let m = tls_message(&e);
    assert!(m.contains("not valid for name \"127.0.0.1\""), "{m}");
    assert!(
        m.contains("verify_hostname"),
        "the error points at the switch: {m}"
    );

    let c = connect(&remote, settings(&files).verify_hostname(false))
        .await
        .unwrap();
    add_switch(&c, "chain-only").await.unwrap();
    assert!(switches(&sandbox).contains("(chain-only)"));
}

/// Runs `ovs-pki` with its PKI under `pki` and its files written to `cwd`.
fn ovs_pki(pki: &Path, cwd: &Path, args: &[&str]) {
    let out = Command::new("ovs-pki")
        .arg(format!("--dir={}", pki.display()))
        .arg(format!("--log={}", cwd.join("ovs-pki.log").display()))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run ovs-pki ({e}): run scripts/setup, which installs openvswitch-pki")
        });
    assert!(
        out.status.success(),
        "ovs-pki {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The PKI an OVS/OVN deployment makes with `ovs-pki`: RSA keys, and certificates whose only
/// SAN is `DNS:<name>`. As in OVS, the server ("controller" type) is signed by `controllerca`
/// and trusts `switchca` for its clients; the client ("switch" type) the other way round.
#[tokio::test]
async fn ovs_pki_certificates_work_with_the_name_check_off() {
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    ovs_pki(&pki, work.path(), &["init"]);
    ovs_pki(&pki, work.path(), &["req+sign", "ovsdb", "controller"]);
    ovs_pki(&pki, work.path(), &["req+sign", "vpc", "switch"]);
    let file = |name: &str| work.path().join(name);
    let server = SslFiles {
        key: file("ovsdb-privkey.pem"),
        cert: file("ovsdb-cert.pem"),
        ca: pki.join("switchca/cacert.pem"),
    };
    let client = TlsSettings::from_files(
        file("vpc-privkey.pem"),
        file("vpc-cert.pem"),
        pki.join("controllerca/cacert.pem"),
    )
    .unwrap();
    let (sandbox, remote) = sandbox_with_ssl(server);

    // ovs-pki's certificate names "ovsdb", not 127.0.0.1.
    let e = connect(&remote, client.clone()).await.unwrap_err();
    assert!(tls_message(&e).contains("not valid for name"), "{e}");

    let c = connect(&remote, client.verify_hostname(false))
        .await
        .unwrap();
    add_switch(&c, "ovs-pki").await.unwrap();
    assert!(switches(&sandbox).contains("(ovs-pki)"));

    // ovn-nbctl, with the same files, agrees with our view of the server.
    let out = nbctl(
        &remote,
        &[
            &format!("--private-key={}", file("vpc-privkey.pem").display()),
            &format!("--certificate={}", file("vpc-cert.pem").display()),
            &format!(
                "--ca-cert={}",
                pki.join("controllerca/cacert.pem").display()
            ),
            "ls-list",
        ],
    );
    assert!(out.contains("(ovs-pki)"), "{out}");
}

#[test]
fn key_and_certificate_files_that_do_not_belong_together_are_refused() {
    let pki = Pki::new();
    let a = pki.client("a", &pki.ca, &pki.ca);
    let b = pki.client("b", &pki.ca, &pki.ca);
    let e = TlsSettings::from_files(&a.key, &b.cert, &a.ca).unwrap_err();
    let m = tls_message(&e);
    assert!(
        m.contains("a-key.pem does not belong to certificate"),
        "{m}"
    );
    assert!(m.contains("b-cert.pem"), "{m}");

    // A key where the CA certificate should be.
    let e = TlsSettings::from_files(&a.key, &a.cert, &a.key).unwrap_err();
    let m = tls_message(&e);
    assert!(m.contains("CA certificate"), "{m}");
    assert!(m.contains("no certificate found"), "{m}");
}

#[tokio::test]
async fn the_tls_listener_keeps_its_port_across_a_restart() {
    let pki = Pki::new();
    let (mut sandbox, remote) = sandbox_with_ssl(pki.server(&["127.0.0.1"]));
    let tls = settings(&pki.client("vpc-controller", &pki.ca, &pki.ca));
    sandbox.kill_nb(0).unwrap();
    assert!(connect(&remote, tls.clone()).await.is_err());
    sandbox.start_nb(0).unwrap();
    assert_eq!(sandbox.nb_ssl_remote().as_deref(), Some(remote.as_str()));
    let c = connect(&remote, tls).await.unwrap();
    add_switch(&c, "after-restart").await.unwrap();
    assert!(switches(&sandbox).contains("(after-restart)"));
}
