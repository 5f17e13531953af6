/* causes.h - the failure causes and warnings of SPEC §3, defined once.
 * One X-macro list generates the enum, the API identifier, the phase, the agent.log
 * symptom, the description and the remediation, so they cannot drift apart. */
#ifndef FS_CAUSES_H
#define FS_CAUSES_H

#include <stdint.h>

/* X(ENUM, "identifier", "phase", "agent.log symptom", "description", "remediation")
 * Order is the primary-cause priority: an offline endpoint reports the first one that applies. */
#define FS_CAUSE_LIST(X)                                                                           \
    X(DNS_FAILURE, "dns_failure", "resolve", "Unable to resolve host",                             \
      "The endpoint could not resolve the server's FQDN.",                                         \
      "Check the FQDN in the agent communication profile; check the DNS records (A/AAAA) seen "    \
      "from the endpoint's network; check hosts-file overrides on the endpoints.")                 \
    X(CONNECT_REFUSED, "connect_refused", "connect", "Unable to connect to server",                \
      "The server actively refused the TCP connection (nothing listens on that port).",            \
      "Check that IIS is running and has a binding on this port (IIS Manager > Site > Bindings); " \
      "check the port in the agent communication profile; check host firewalls.")                  \
    X(CONNECT_TIMEOUT, "connect_timeout", "connect", "Server is unavailable",                      \
      "The TCP connection did not complete in time (host down or packets dropped).",               \
      "Check that the server is up and reachable from the endpoint's network; check firewalls "    \
      "and routes between the endpoints and the server; check the address DNS returns.")           \
    X(PROFILE_MISMATCH, "profile_mismatch", "connect/tls",                                         \
      "Agent attempts HTTP or an incorrect port/FQDN",                                             \
      "The agent's communication profile differs from the server's binding (scheme, port or "      \
      "FQDN) and fails while the reference binding answers.",                                      \
      "Update the agent communication profile (Settings > Notification Server > Site Server "      \
      "Settings > Agent Communication Profile) to HTTPS, the bound port and the certificate's "    \
      "FQDN; push the profile before retiring the old binding.")                                   \
    X(TLS_HANDSHAKE_FAILED, "tls_handshake_failed", "tls",                                         \
      "SSL connection could not be established",                                                   \
      "The TLS handshake failed: protocol or cipher mismatch, an alert, or the server does not "   \
      "speak TLS on this port.",                                                                   \
      "Compare the endpoint's enabled TLS versions and cipher suites with the server's "           \
      "(Schannel registry, IIS Crypto); check that the port carries the HTTPS binding.")           \
    X(CONNECTION_CLOSED, "connection_closed", "tls", "The underlying connection was closed",       \
      "The server closed or reset the connection during the handshake or the request.",            \
      "Check the IIS HTTPS binding has a certificate with a private key; check load balancers "    \
      "and proxies in front of the server; check the HTTP.sys error log.")                         \
    X(CERT_EXPIRED, "cert_expired", "verify", "Could not establish trust relationship",            \
      "A certificate in the presented chain is past its notAfter date at the endpoint's time.",    \
      "Renew the server certificate (or the expired intermediate), bind the new one in IIS "       \
      "(Site > Bindings > https > SSL certificate) and restart the site.")                         \
    X(CERT_NOT_YET_VALID, "cert_not_yet_valid", "verify",                                          \
      "Could not establish trust relationship (clock or dates)",                                   \
      "A certificate is not valid yet at the endpoint's time (new certificate or a clock "         \
      "behind).",                                                                                  \
      "Check the endpoints' clocks (w32tm /query /status); issue certificates with a notBefore "   \
      "in the past; wait for the validity start before binding.")                                  \
    X(HOSTNAME_MISMATCH, "hostname_mismatch", "verify",                                            \
      "Certificate validation error (wrong certificate bound to 443)",                             \
      "The certificate does not name the FQDN the endpoint connects to, or is not a server "       \
      "certificate (no serverAuth usage): the wrong certificate is bound.",                        \
      "Bind the certificate whose SAN contains the profile's FQDN (IIS > Bindings > https); "      \
      "check SNI bindings and the default (no-SNI) binding; check the profile's FQDN.")            \
    X(THUMBPRINT_MISMATCH, "thumbprint_mismatch", "verify",                                        \
      "Bound certificate is not the expected one",                                                 \
      "The server presents a certificate whose thumbprint differs from the expected pin.",         \
      "Compare `netsh http show sslcert` with the expected thumbprint; rebind the intended "       \
      "certificate or update the pin after a planned renewal.")                                    \
    X(MISSING_INTERMEDIATE, "missing_intermediate", "verify", "Trust chain incomplete",            \
      "The chain stops at a certificate whose issuer the endpoint cannot find: the server does "   \
      "not send it, the endpoint's stores lack it and AIA cannot fetch it. Usually the server's "  \
      "intermediate; if that issuer is a root, the endpoints lack the root.",                      \
      "Server side: import the intermediate into the server's Intermediate Certification "         \
      "Authorities store (MMC > Certificates > Local Computer) so IIS sends the full chain, and "  \
      "publish a reachable AIA caIssuers URL. If the missing issuer is a root, endpoint side: "    \
      "deploy it to the endpoints' Trusted Root Certification Authorities.")                       \
    X(UNTRUSTED_CA, "untrusted_ca", "verify",                                                      \
      "Could not establish trust relationship: issuing CA not trusted",                            \
      "The chain ends in a root CA that is not in the endpoint's trust store.",                    \
      "Endpoint side: deploy the new root to the endpoints' Trusted Root Certification "           \
      "Authorities (GPO or the agent's certificate policy) before binding a certificate from a "   \
      "new CA.")                                                                                   \
    X(CERT_REVOKED, "cert_revoked", "revocation", "Trust failure: certificate revoked",            \
      "A certificate in the chain is listed on its issuer's CRL.",                                 \
      "Issue and bind a new certificate; check why it was revoked (CA audit log).")                \
    X(CRL_UNREACHABLE, "crl_unreachable", "revocation",                                            \
      "The revocation function was unable to check revocation because the revocation server "      \
      "was offline",                                                                               \
      "No CRL distribution point of the certificate could be fetched (DNS, refused, timeout, "     \
      "HTTP error or empty body).",                                                                \
      "Publish the CRL at the CDP URL (CA > Extensions), open the firewall from the endpoints to " \
      "the CRL host, or reissue the certificate without legacy CDP URLs (ldap://, old hosts).")    \
    X(CRL_EXPIRED, "crl_expired", "revocation",                                                    \
      "The revocation function was unable to check revocation",                                    \
      "The CRL served at the distribution point is past its nextUpdate.",                          \
      "Publish a fresh CRL (certutil -crl) and check the CA's CRL publication schedule.")          \
    X(CRL_INVALID, "crl_invalid", "revocation",                                                    \
      "The revocation function was unable to check revocation",                                    \
      "The CRL is unparsable, has a wrong signature or issuer, or exceeds the size cap.",          \
      "Republish the CRL from the issuing CA; check the URL serves the CRL itself, not an HTML "   \
      "page or a proxy error.")                                                                    \
    X(HTTP_ERROR, "http_error", "request", "Failed to send request",                               \
      "The server answered the agent URL with a 5xx status or an unparsable response.",            \
      "Check the IIS application pool and the Notification Server services; check the "            \
      "agent URL path in the profile.")                                                            \
    X(PROBE_TIMEOUT, "probe_timeout", "any", "Server is unavailable (timeout)",                    \
      "The probe exceeded its deadline in a phase no specific cause describes (a stalled "         \
      "handshake or request).",                                                                    \
      "Check server load and anything in the path that accepts connections but does not answer "   \
      "(load balancer, proxy, a hung application pool).")

#define FS_WARNING_LIST(X)                                                                         \
    X(CERT_EXPIRING_SOON, "cert_expiring_soon", "verify", "Certificate expires soon",              \
      "A certificate in the presented chain expires within the warning window.",                   \
      "Renew it now and bind the new certificate before the old one expires; check the forecast.") \
    X(CRL_EXPIRING_SOON, "crl_expiring_soon", "revocation", "CRL nextUpdate is near",              \
      "A CRL the endpoint uses reaches its nextUpdate soon.",                                      \
      "Check the CA publishes the next CRL before nextUpdate (CRL publication interval, "          \
      "overlap).")                                                                                 \
    X(AIA_FETCH_REQUIRED, "aia_fetch_required", "verify", "Chain completed through AIA",           \
      "The chain only completes because the endpoint fetched the issuer from its AIA URL.",        \
      "Make IIS send the full chain: import the intermediate into the server's Intermediate "      \
      "Certification Authorities store.")                                                          \
    X(REVOCATION_SOFT_FAIL, "revocation_soft_fail", "revocation",                                  \
      "Revocation server offline (ignored by policy)",                                             \
      "The CRL could not be fetched; the endpoint's soft-fail policy let it through.",             \
      "Fix CRL reachability before any endpoint runs a strict policy.")                            \
    X(WEAK_PROTOCOL, "weak_protocol", "tls", "Legacy TLS negotiated",                              \
      "TLS older than 1.2 was negotiated because the endpoint allows it.",                         \
      "Enable TLS 1.2 on the server (IIS Crypto / Schannel) and disable TLS 1.0/1.1.")             \
    X(WEAK_SIGNATURE, "weak_signature", "verify", "SHA-1 signed certificate",                      \
      "A certificate in the chain is signed with SHA-1; Windows accepts it from an enterprise "    \
      "CA.",                                                                                       \
      "Reissue the certificate (and intermediate) with SHA-256 signatures.")                       \
    X(REVOCATION_URL_DEAD, "revocation_url_dead", "revocation",                                    \
      "Revocation URL dead (another one answered)",                                                \
      "A CDP, delta-CRL or OCSP URL of a certificate could not be used although another URL "      \
      "answered; every uncached check on a real endpoint waits for it to fail first (up to the "   \
      "per-URL timeout).",                                                                         \
      "Reissue without legacy CDP URLs (old hosts, ldap:// on clients off the domain): remove "    \
      "the "                                                                                       \
      "dead URL from the CA's CDP/AIA extensions (CA > Properties > Extensions) and renew; or "    \
      "make the URL answer again (publish the CRL there, fix the OCSP responder).")                \
    X(BACKEND_INCONSISTENT, "backend_inconsistent", "any",                                         \
      "Intermittent failures: some connections to the server work, others do not",                 \
      "The addresses or backends behind one name serve different certificates or disagree on "     \
      "the outcome: one node of a farm (or a DNS round-robin member) still has the old binding, "  \
      "or is down while the others answer.",                                                       \
      "Bind the same certificate on every node and backend (IIS > Bindings > https on each); "     \
      "check the load balancer's pool members and health checks, and the addresses DNS returns "   \
      "for the name; renew and rebind all nodes together.")

typedef enum {
    FS_CAUSE_NONE = 0,
#define X(e, id, ph, sym, desc, rem) FS_CAUSE_##e,
    FS_CAUSE_LIST(X)
#undef X
        FS_CAUSE_COUNT
} fs_cause_t;

typedef enum {
#define X(e, id, ph, sym, desc, rem) FS_WARN_##e,
    FS_WARNING_LIST(X)
#undef X
        FS_WARN_COUNT
} fs_warning_t;

#define FS_WARN_BIT(w) (1u << (w))

typedef struct fs_cause_info_s {
    const char *id;
    const char *phase;
    const char *symptom;
    const char *description;
    const char *remediation;
} fs_cause_info_t;

/* Catalogue entries; FS_CAUSE_NONE has id "none". Never NULL for a valid value. */
const fs_cause_info_t *fs_cause_info(fs_cause_t c);
const fs_cause_info_t *fs_warning_info(fs_warning_t w);
const char *fs_cause_id(fs_cause_t c);
const char *fs_warning_id(fs_warning_t w);
/* Returns the cause for an API identifier, or -1 when unknown. */
int fs_cause_from_id(const char *id);
int fs_warning_from_id(const char *id);

#endif
