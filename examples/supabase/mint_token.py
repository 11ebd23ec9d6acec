"""Mint a Supabase-shaped session token (HS256) for trying Palisade locally.

Supabase Auth issues these to signed-in users; this script signs one with $SUPABASE_JWT_SECRET
so that you can try the example without a project. Python standard library only.

    python3 mint_token.py --role developer --tenant acme      # prints the token
    python3 mint_token.py --anon                               # what the public anon key carries
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid

ISSUER = "https://abcdefghijklmnop.supabase.co/auth/v1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims: dict, secret: str) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", help="app_metadata.role (a Palisade role, e.g. developer)")
    parser.add_argument("--tenant", help="app_metadata.tenant")
    parser.add_argument("--email", default="alice@example.com")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    parser.add_argument("--anon", action="store_true", help="an anon-key token (no user, no aud)")
    args = parser.parse_args()
    secret = os.environ.get("SUPABASE_JWT_SECRET")
    if not secret:
        print("set SUPABASE_JWT_SECRET (your project's JWT secret)", file=sys.stderr)
        return 2
    now = int(time.time())
    if args.anon:
        claims = {"iss": "supabase", "ref": "abcdefghijklmnop", "role": "anon", "iat": now,
                  "exp": now + args.ttl}
    else:
        app_metadata: dict = {"provider": "email", "providers": ["email"]}
        if args.role:
            app_metadata["role"] = args.role
        if args.tenant:
            app_metadata["tenant"] = args.tenant
        claims = {
            "iss": ISSUER,
            "aud": "authenticated",
            "sub": str(uuid.uuid4()),
            "email": args.email,
            "phone": "",
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": str(uuid.uuid4()),
            "is_anonymous": False,
            "app_metadata": app_metadata,
            "user_metadata": {},
            "iat": now,
            "exp": now + args.ttl,
        }
    print(sign(claims, secret))
    return 0


if __name__ == "__main__":
    sys.exit(main())
