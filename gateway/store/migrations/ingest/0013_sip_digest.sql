-- SCAIP units authenticate with SIP Digest (SS 91100 §8): for each credential the gateway
-- issues it keeps, besides the SHA-256 that HTTP and MQTT check, the Digest H(A1) of
-- (device id, SIP realm, credential) for MD5 and SHA-256 (RFC 7616): what a Digest check
-- needs without the credential itself. Rotated and removed with the credential.
ALTER TABLE device ADD COLUMN sip_ha1_md5 text, ADD COLUMN sip_ha1_sha256 text;
