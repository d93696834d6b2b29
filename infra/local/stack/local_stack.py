"""``tidings up``: the whole AWS path on 127.0.0.1, built from ``infra/template.yaml``.

1. moto in server mode is the control plane; the template is deployed to its CloudFormation
   exactly as ``tidings deploy`` sends it to AWS (tables, streams, queues, roles, functions,
   mappings, API resources).
2. What moto cannot run comes from the same template, resolved against the deployed stack:
   the identity pool (local Cognito Identity + STS), the IoT data plane (the gateway), the
   API's data plane (routes and their auth, stage throttling), the functions (the
   repository's own handlers, each in worker processes with its template environment and
   credentials of its template role, so its IAM policy is enforced by the local services;
   a function's ``ReservedConcurrentExecutions`` is its limit, the others share the
   account's unreserved concurrency, and an invocation beyond its limit is throttled),
   and the event source mappings (the stream pump, with the mapping's settings and its
   on-failure destination).
3. The endpoints are written to ``.tidings/local.env`` for any shell or tool.

Credentials, as on AWS: moto checks every request's SigV4 signature and IAM policies
(``infra/local/motohost/auth.py``). At start the stack mints the developer's own key pair
(``AKIA…``, an IAM user with ``Action: *``), which its own clients, ``stack.client()`` and
``.tidings/local.env`` (written readable by its owner only) use; every other key it issues
(the functions' role sessions, Cognito identities' credentials) carries its IAM policies.
The stack's :class:`~infra.local.awsauth.credential_store.CredentialStore` is mirrored into the moto
process over its stdin, key by key, before a key is handed out. A Cognito identity's
credential reaches moto without its IoT policy set (IoT policies apply to the IoT data plane
only), named as AWS names it (``assumed-role/<authenticated role>/CognitoIdentityCredentials``).
The event source mappings read their streams with their function's role, as Lambda does.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from infra import data_files
from infra.local.apigateway.service import ApiGateway, ApiRoute, Throttle
from infra.local.awsauth.credential_store import (
    CredentialStore,
    StoredCredential,
    credential_to_dict,
)
from infra.local.awsauth.devices import DeviceCA
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.functions.runtime import ConcurrencyLimit, FunctionPool, FunctionSpec
from infra.local.functions.stream_pump import MappingSettings, StreamPump
from infra.local.functions.streams_wire import WireStreamsClient
from infra.local.functions.worker import ACCOUNT_ID_VARIABLE
from infra.local.identity.credentials_provider import CredentialsProvider, RoleAlias
from infra.local.identity.service import (
    SUB_KEY,
    IdentityPool,
    IdentityServiceConfig,
    IdentityServiceThread,
    iot_control_plane_policies,
)
from infra.local.iot.broker import BrokerConfig
from infra.local.iot.gateway import GatewayConfig
from infra.local.iot.gateway_thread import GatewayThread
from infra.local.net.certs import TlsFiles
from infra.local.stack.device_directory import IotDeviceDirectory
from infra.local.stack.template_model import Resolver, Template, load_template
from infra.local.web.site import SiteConfig, WebSite

__all__ = ["LocalStack", "StackConfig", "freeze_process_heap"]

log = logging.getLogger("tidings.up")

ROOT = data_files.code_root()
"""Where the packages live; moto's process runs there."""
TEMPLATE = data_files.data_file(data_files.TEMPLATE)
"""The template the package carries (``infra/template.yaml``)."""
ACCOUNT_ID = "123456789012"  # moto's default account
DEVELOPER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/tidings-local-developer"
ADMINISTRATOR_ACCESS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
"""The developer's policy: AWS's managed AdministratorAccess."""


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack listens and what it deploys."""

    template: Path = TEMPLATE
    state_dir: Path = Path(".tidings")
    region: str = "us-east-1"
    stage: str = "dev"
    stack_name: str = "tidings-local"
    gateway_port: int = 8443
    api_port: int = 8444
    identity_port: int = 8445
    moto_port: int = 8446
    web_port: int = 8447
    """The demo page and the web client's modules (plain HTTP on 127.0.0.1)."""
    mqtt_port: int = 8448
    """MQTT over mutual TLS for X.509 devices (AWS IoT Core: 8883)."""
    credentials_port: int = 8449
    """The AWS IoT credentials provider (role aliases, over mutual TLS)."""
    parameters: Mapping[str, str] = field(default_factory=dict)
    """Template parameter overrides (e.g. ``RetentionSeconds``)."""
    credential_lifetime_s: float = 3600.0
    broker: BrokerConfig | None = None
    account_concurrency: int = 40
    """The account's Lambda concurrency (AWS's default quota is 1000). A function with
    ``ReservedConcurrentExecutions`` gets exactly that many executions, carved out of it;
    the functions without share what is left (the unreserved pool). An invocation beyond its
    function's limit is throttled at once, as on AWS. Locally each execution is a worker
    process, hence the small default."""
    minimum_unreserved_concurrency: int = 10
    """The fewest executions the reservations must leave unreserved (AWS: 100 on a 1000
    account); the stack refuses to start otherwise, as AWS refuses such a reservation."""
    stream_poll_interval_s: float = 0.25
    """How often an idle pump asks a shard for records (Lambda polls about 4 times a second).
    moto also tells the pumps about every new record, so they read at once."""
    function_log: Path | None = None
    """Where the functions' logs go (appended); None: this process's stderr."""

    @property
    def env_file(self) -> Path:
        """The sourceable endpoints file."""
        return self.state_dir / "local.env"


class LocalStack:
    """Start with :meth:`start`, stop with :meth:`stop` (or use it as a context manager)."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.template: Template = load_template(config.template)
        self.credentials = CredentialStore()
        self.env: dict[str, str] = {}
        self.functions: dict[str, FunctionPool] = {}
        self._log_file: IO[str] | None = None  # config.function_log, opened on first use
        self.pumps: list[StreamPump] = []
        self.physical_ids: dict[str, str] = {}
        self.outputs: dict[str, str] = {}
        """The template's ``Outputs`` resolved against this stack (``ApiUrl`` is local)."""
        self.tables: dict[str, str] = {}
        self.dead_letter_queue_url: str | None = None
        self.developer: StoredCredential = _developer_credential()
        """The developer's own key pair (may do everything); new at every start."""
        self.role_credentials: dict[str, StoredCredential] = {}
        """Each function's role session credential, by the function's logical id."""
        self._pool_roles: dict[str, str] = {}
        self._moto: Any = None
        self._gateway: GatewayThread | None = None
        self._identity: IdentityServiceThread | None = None
        self._api: ApiGateway | None = None
        self._site: WebSite | None = None
        self._credentials_provider: CredentialsProvider | None = None
        self._stopped = threading.Event()
        self._boto: Any = None  # the boto3 session every client() comes from
        self._boto_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bring everything up; raises ``OSError`` naming the port if one is busy."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        from infra.local.motohost.fixes import check_moto_version

        check_moto_version()  # before anything starts: the fixes fit one moto release
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        _check_port(config.moto_port, "moto (AWS control planes)")
        import socket

        # signs the certificates moto's CreateKeysAndCertificate makes; only the stack holds it
        self.device_ca = DeviceCA.load_or_create(config.state_dir / "local")
        self._notify = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._notify.bind(("127.0.0.1", 0))
        self._moto = _start_moto_process(
            config.moto_port,
            self._notify.getsockname()[1],
            config.region,
            ACCOUNT_ID,
            device_ca_dir=self.device_ca.cert_file.parent,
        )
        self.moto_url = f"http://127.0.0.1:{self._moto.port}"
        self.credentials.add_listener(self._mirror_to_moto)
        self.credentials.put(self.developer)

        broker = config.broker or BrokerConfig(region=config.region, account_id=ACCOUNT_ID)
        # who a device certificate belongs to: the IoT control plane (moto), as on AWS
        _check_port(config.mqtt_port, "the MQTT port for devices")
        self.devices = IotDeviceDirectory(self.client("iot"))
        self.devices.start()
        self._gateway = GatewayThread(
            GatewayConfig(
                port=config.gateway_port,
                state_dir=config.state_dir / "local",
                broker=broker,
                mtls_port=config.mqtt_port,
                device_ca_file=self.device_ca.cert_file,
            ),
            self.credentials,
            devices=self.devices,
        )
        gateway = self._gateway.start().gateway
        assert gateway is not None
        self.ca_file = str(gateway.ca_file)
        assert gateway.mtls_port is not None
        self.mqtt_port = gateway.mtls_port
        self.iot_port = gateway.port

        self._deploy_to_moto()
        resolver = self._resolver()
        # moto holds the deployed stack now: it freezes that heap once, before the functions
        # and pumps use it (a collection of it holds moto's answers up for a moment)
        self._moto.freeze_heap()
        self._start_identity(resolver)
        self._start_api_and_functions(resolver)
        self.outputs = self._resolve_outputs(resolver)
        self._start_pumps()
        self._start_site()
        self._start_credentials_provider(resolver)
        threading.Thread(target=self._wake_pumps, daemon=True, name="stream-notify").start()
        self._write_env_file()  # the calling process's heap is left as it is

    @property
    def gateway(self) -> Any:
        """The running IoT gateway (for operators and tests)."""
        assert self._gateway is not None
        return self._gateway.gateway

    def run_on_gateway(self, function: Any, *args: Any) -> Any:
        """Call ``function(*args)`` on the gateway's event loop and return its result."""
        assert self._gateway is not None
        return self._gateway.call(function, *args)

    def restart_gateway(self, down_s: float = 0.0) -> None:
        """Stop the IoT gateway (every connection drops), wait ``down_s``, start it again on
        the same port. Sessions are lost, as in a broker crash."""
        assert self._gateway is not None
        config = self._gateway.config
        self._gateway.stop()
        time.sleep(down_s)
        from dataclasses import replace as _replace

        self._gateway = GatewayThread(
            _replace(config, port=self.iot_port, mtls_port=self.mqtt_port),
            self.credentials,
            devices=self.devices,
        )
        self._gateway.start()

    def stop(self) -> None:
        """Stop everything that was started (safe to call twice)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for pump in self.pumps:
            pump.stop()
        if self._site is not None:
            self._site.stop()
        if self._credentials_provider is not None:
            self._credentials_provider.stop()
        devices = getattr(self, "devices", None)
        if devices is not None:
            devices.stop()
        if self._api is not None:
            self._api.stop()
        for pool in self.functions.values():
            pool.close()
        if self._identity is not None:
            self._identity.stop()
        if self._gateway is not None:
            self._gateway.stop()
        if self._moto is not None:
            self._moto.stop()
        notify = getattr(self, "_notify", None)
        if notify is not None:
            notify.close()
        if self._log_file is not None:
            self._log_file.close()

    def _function_log(self) -> Any:
        """The open file the functions log to (``config.function_log``), or None."""
        if self.config.function_log is None:
            return None
        if self._log_file is None:
            self.config.function_log.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.config.function_log.open("a", encoding="utf-8")
        return self._log_file

    # ------------------------------------------------------------------ moto
    def client(
        self, service: str, credential: StoredCredential | None = None, *, config: Any = None
    ) -> Any:
        """A boto3 client for one of moto's services, signing with ``credential`` (the
        developer's by default); ``config``: a ``botocore.config.Config``."""
        credential = credential or self.developer
        # one boto3 session for every client: its loader reads each service's model once (a
        # session per client read them anew, about 4 s of every start); creating clients from
        # one session is not thread-safe, hence the lock (the clients themselves are)
        with self._boto_lock:
            if self._boto is None:
                import boto3

                self._boto = boto3.session.Session(region_name=self.config.region)
            return self._boto.client(
                service,
                endpoint_url=self.moto_url,
                region_name=self.config.region,
                aws_access_key_id=credential.access_key_id,
                aws_secret_access_key=credential.secret_access_key,
                aws_session_token=credential.session_token,
                config=config,
            )

    def _mirror_to_moto(self, access_key_id: str, credential: StoredCredential | None) -> None:
        """Tell moto about a key put into (or removed from) the stack's store, and wait."""
        if credential is None:
            self._moto.push({"remove": access_key_id})
            return
        if SUB_KEY in credential.variables:
            # a Cognito identity's: [role, (session policy,) IoT policies]; IoT's do not
            # apply to AWS APIs. AWS names the principal after the pool's role.
            pool_id = credential.variables.get("cognito-identity.amazonaws.com:aud", "")
            role_arn = self._pool_roles.get(pool_id)
            arn = credential.arn
            if arn is None and role_arn is not None:
                role_name = role_arn.rsplit("/", 1)[-1]
                session = "CognitoIdentityCredentials"
                arn = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/{session}"
            credential = replace(credential, policy_sets=credential.policy_sets[:-1], arn=arn)
        self._moto.push({"put": credential_to_dict(credential)})

    def _deploy_to_moto(self) -> None:
        from infra.deploy import build_package

        package = build_package()
        bucket, key = "tidings-local-artifacts", f"lambda/{package.sha256}.zip"
        s3 = self.client("s3")
        if self.config.region == "us-east-1":  # S3 refuses a constraint naming us-east-1
            s3.create_bucket(Bucket=bucket)
        else:
            location = {"LocationConstraint": self.config.region}
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)
        s3.put_object(Bucket=bucket, Key=key, Body=package.data)
        self.parameters = {
            **self.template.parameter_defaults(),
            "Stage": self.config.stage,
            "CodeBucket": bucket,
            "CodeKey": key,
            "IotEndpoint": "localhost",
            "IotPort": str(self.iot_port),
            **self.config.parameters,
        }
        declared = set((self.template.body.get("Parameters") or {}).keys())
        cloudformation = self.client("cloudformation")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # moto warns about the types it skips
            cloudformation.create_stack(
                StackName=self.config.stack_name,
                # as loaded: its AWS::Include (the API's OpenAPI Body) inlined, as
                # CloudFormation's transform does
                TemplateBody=json.dumps(self.template.body),
                Parameters=[
                    {"ParameterKey": k, "ParameterValue": v}
                    for k, v in self.parameters.items()
                    if k in declared
                ],
                Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            )
            deadline = time.time() + 120
            while True:
                stack = cloudformation.describe_stacks(StackName=self.config.stack_name)
                status = stack["Stacks"][0]["StackStatus"]
                if not status.endswith("_IN_PROGRESS"):
                    break
                if time.time() > deadline:
                    raise RuntimeError("moto's CloudFormation did not finish in 120 s")
                time.sleep(0.2)
        if status != "CREATE_COMPLETE":
            raise RuntimeError(f"the template failed to deploy locally: {status}")
        for resource in cloudformation.describe_stack_resources(StackName=self.config.stack_name)[
            "StackResources"
        ]:
            if "LogicalResourceId" in resource and resource.get("PhysicalResourceId"):
                self.physical_ids[resource["LogicalResourceId"]] = resource["PhysicalResourceId"]

    def _resolver(self) -> Resolver:
        region, account = self.config.region, ACCOUNT_ID
        attributes: dict[tuple[str, str], str] = {}
        dynamodb = self.client("dynamodb")
        for logical in self.template.tables():
            name = self.physical_ids[logical]
            self.tables[logical] = name
            table = dynamodb.describe_table(TableName=name)["Table"]
            attributes[(logical, "Arn")] = table["TableArn"]
            if "LatestStreamArn" in table:
                attributes[(logical, "StreamArn")] = table["LatestStreamArn"]
        for logical, resource in self.template.resources.items():
            kind = resource["Type"]
            physical = self.physical_ids.get(logical)
            if kind == "AWS::IAM::Role" and physical:
                attributes[(logical, "Arn")] = f"arn:aws:iam::{account}:role/{physical}"
            elif kind == "AWS::Lambda::Function" and physical:
                attributes[(logical, "Arn")] = (
                    f"arn:aws:lambda:{region}:{account}:function:{physical}"
                )
            elif kind == "AWS::SQS::Queue" and physical:
                name = physical.rsplit("/", 1)[-1]
                attributes[(logical, "Arn")] = f"arn:aws:sqs:{region}:{account}:{name}"
                attributes[(logical, "QueueName")] = name
                # moto names it https://sqs.<region>.amazonaws.com/<account>/<name>
                path = urllib.parse.urlsplit(physical).path
                self.dead_letter_queue_url = self.dead_letter_queue_url or self.moto_url + path
            elif kind == "AWS::Cognito::IdentityPool":
                # moto skips identity pools: the local identity service owns this one
                self.physical_ids[logical] = f"{region}:{uuid.uuid5(uuid.NAMESPACE_URL, logical)}"
        return Resolver(
            parameters=self.parameters,
            physical_ids=self.physical_ids,
            attributes=attributes,
            pseudo={
                "AWS::Region": region,
                "AWS::AccountId": account,
                "AWS::StackName": self.config.stack_name,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
            },
        )

    # ------------------------------------------------------------------ identity
    def _role_documents(self, resolver: Resolver, logical: str) -> list[dict[str, Any]]:
        return [resolver(doc) for doc in self.template.role_policies(logical)]

    def _start_identity(self, resolver: Resolver) -> None:
        pools = []
        roles: dict[str, list[dict[str, Any]]] = {}
        for logical in self.template.of_type("AWS::IAM::Role"):
            arn = resolver({"Fn::GetAtt": [logical, "Arn"]})
            roles[arn] = self._role_documents(resolver, logical)
        for logical in self.template.of_type("AWS::Cognito::IdentityPool"):
            props = self.template.properties(logical)
            attachment_role = None
            for att in self.template.of_type("AWS::Cognito::IdentityPoolRoleAttachment"):
                att_props = self.template.properties(att)
                if att_props.get("IdentityPoolId") == {"Ref": logical}:
                    attachment_role = resolver((att_props.get("Roles") or {}).get("authenticated"))
            if attachment_role is None:
                raise RuntimeError(f"{logical} has no authenticated role attached")
            self._pool_roles[self.physical_ids[logical]] = str(attachment_role)
            pools.append(
                IdentityPool(
                    pool_id=self.physical_ids[logical],
                    developer_provider=str(resolver(props.get("DeveloperProviderName"))),
                    authenticated_role_arn=str(attachment_role),
                )
            )
        self._identity = IdentityServiceThread(
            IdentityServiceConfig(
                pools=tuple(pools),
                roles=roles,
                region=self.config.region,
                account_id=ACCOUNT_ID,
                port=self.config.identity_port,
                credential_lifetime_s=self.config.credential_lifetime_s,
                # moto's state is in memory, so identities start afresh with it every time
                state_dir=None,
            ),
            self.credentials,
            iot_policies=iot_control_plane_policies(self.client("iot")),
        ).start()
        self.identity_url = f"http://127.0.0.1:{self._identity.port}"

    # ------------------------------------------------------------------ functions and API
    def _function_env(self, resolver: Resolver, function: Any) -> dict[str, str]:
        env = {k: str(resolver(v)) for k, v in function.environment.items()}
        role_logical = function.role["Fn::GetAtt"][0]
        role_name = self.physical_ids.get(role_logical, role_logical)
        function_name = self.physical_ids.get(function.logical_id, function.logical_id)
        credential = mint_temporary_credential(
            f"{role_name}/{function.logical_id}",
            [self._role_documents(resolver, role_logical)],
            lifetime_s=12 * 3600,
        )
        credential = replace(
            credential, arn=f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/{function_name}"
        )
        self.credentials.put(credential)
        self.role_credentials[function.logical_id] = credential
        env.update(self.aws_env())
        env.update(
            {
                "AWS_ACCESS_KEY_ID": credential.access_key_id,
                "AWS_SECRET_ACCESS_KEY": credential.secret_access_key,
                "AWS_SESSION_TOKEN": credential.session_token or "",
            }
        )
        env[ACCOUNT_ID_VARIABLE] = ACCOUNT_ID  # the worker's invoked_function_arn
        if "TIDINGS_API_URL" in env:
            env["TIDINGS_API_URL"] = self.api_url
        return env

    def aws_env(self) -> dict[str, str]:
        """The standard AWS endpoint settings that point boto3 at the local stack."""
        region = self.config.region
        return {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL_DYNAMODB": self.moto_url,
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.moto_url,
            "AWS_ENDPOINT_URL_SQS": self.moto_url,
            "AWS_ENDPOINT_URL_S3": self.moto_url,
            "AWS_ENDPOINT_URL_IOT": self.moto_url,
            "AWS_ENDPOINT_URL_CLOUDFORMATION": self.moto_url,
            "AWS_ENDPOINT_URL_LAMBDA": self.moto_url,
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY": self.identity_url,
            "AWS_ENDPOINT_URL_STS": self.identity_url,
            "AWS_ENDPOINT_URL_IOT_DATA_PLANE": f"https://localhost:{self.iot_port}",
            "AWS_CA_BUNDLE": self.ca_file,
        }

    def _start_api_and_functions(self, resolver: Resolver) -> None:
        stage = self.config.stage
        rate, burst = self.template.stage_throttling()
        tls = TlsFiles(
            Path(self.ca_file),
            Path(self.ca_file).with_name("server.pem"),
            Path(self.ca_file).with_name("server.key"),
        )
        api_logical = next(iter(self.template.of_type("AWS::ApiGateway::RestApi")))
        _check_port(self.config.api_port, "the API gateway")
        routes: list[ApiRoute] = []
        self._api = ApiGateway(
            routes,
            self.credentials,
            tls.server_context(),
            region=self.config.region,
            account_id=ACCOUNT_ID,
            api_id=self.physical_ids[api_logical],
            stage=stage,
            port=self.config.api_port,
            throttle=Throttle(rate, int(burst)),
            gateway_responses=self.template.gateway_responses(resolver),
        )
        # the functions' environment names the API's URL, so the API binds its port first; it
        # answers "no route" until the routes below are in (and nobody knows its URL yet)
        self._api.start()
        self.api_url = self._api.url
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TIDINGS_"))}
        functions = self.template.functions()
        reserved = {
            logical: int(resolver(function.reserved_concurrency))
            for logical, function in functions.items()
            if function.reserved_concurrency is not None
        }
        unreserved = self.config.account_concurrency - sum(reserved.values())
        if unreserved < self.config.minimum_unreserved_concurrency:
            raise RuntimeError(
                f"the functions' reserved concurrency ({sum(reserved.values())}) leaves "
                f"{unreserved} of the account's {self.config.account_concurrency} unreserved, "
                f"below the minimum {self.config.minimum_unreserved_concurrency}: lower "
                "the reservations or raise StackConfig.account_concurrency"
            )
        self.unreserved_concurrency = ConcurrencyLimit(
            unreserved, "the account's unreserved concurrency"
        )
        for logical, function in functions.items():
            spec = FunctionSpec(
                name=self.physical_ids.get(logical, logical),
                handler=function.handler,
                environment=self._function_env(resolver, function),
                timeout_s=function.timeout_s,
                memory_mb=function.memory_mb,
                max_concurrency=reserved.get(logical, unreserved),
            )
            shared = None if logical in reserved else self.unreserved_concurrency
            pool = FunctionPool(spec, base_env, log=self._function_log(), concurrency=shared)
            pool.warm()
            self.functions[logical] = pool
        for method in self.template.api_methods(resolver):
            if method.mock is not None:  # the CORS preflights: the gateway answers them
                routes.append(
                    ApiRoute(
                        method.http_method,
                        method.resource_path,
                        method.authorization,
                        mock=method.mock,
                    )
                )
                continue
            if method.function is None or method.function not in self.functions:
                continue
            routes.append(
                ApiRoute(
                    method.http_method,
                    method.resource_path,
                    method.authorization,
                    self.functions[method.function].invoke,
                )
            )
        self._api.routes = routes

    # ------------------------------------------------------------------ streams
    def _start_pumps(self) -> None:
        from botocore.config import Config
        from botocore.credentials import Credentials

        dynamodb = self.client("dynamodb")
        for mapping in self.template.event_source_mappings():
            # Lambda reads a mapping's stream with the function's execution role
            role = self.role_credentials[mapping.function]
            table = self.tables[mapping.table]
            stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
            streams = WireStreamsClient(
                self.client("dynamodbstreams", role, config=Config(retries={"max_attempts": 2})),
                Credentials(role.access_key_id, role.secret_access_key, role.session_token),
            )
            settings = MappingSettings(
                batch_size=mapping.batch_size,
                maximum_batching_window_s=mapping.batching_window_s,
                report_batch_item_failures=mapping.report_batch_item_failures,
                bisect_on_error=mapping.bisect_on_error,
                maximum_retry_attempts=mapping.maximum_retry_attempts,
                starting_position="TRIM_HORIZON"
                if mapping.starting_position != "LATEST"
                else "LATEST",
            )
            pump = StreamPump(
                streams,
                stream_arn,
                self.functions[mapping.function].invoke,
                settings,
                on_failure=self._on_failure_destination(mapping),
                poll_interval_s=self.config.stream_poll_interval_s,
            )
            pump.start()
            self.pumps.append(pump)

    def _on_failure_destination(self, mapping: Any) -> Any:
        if mapping.on_failure_destination is None or self.dead_letter_queue_url is None:
            return None
        # Lambda sends to a mapping's on-failure destination with the function's role
        sqs = self.client("sqs", self.role_credentials.get(mapping.function))
        queue_url = self.dead_letter_queue_url

        def send(info: dict[str, Any]) -> None:
            body = {
                "version": "1.0",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "requestContext": {
                    "condition": "RetryAttemptsExhausted",
                    "functionArn": mapping.function,
                },
                "DDBStreamBatchInfo": info,
            }
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body, default=str))

        return send

    def _wake_pumps(self) -> None:
        """Wake the pumps of a table as soon as moto reports a new stream record."""
        by_table: dict[str, list[StreamPump]] = {}
        for pump in self.pumps:
            table = pump.stream_arn.split(":table/", 1)[1].split("/stream/", 1)[0]
            by_table.setdefault(table, []).append(pump)
        while not self._stopped.is_set():
            try:
                data, _ = self._notify.recvfrom(1024)
            except OSError:
                return
            for pump in by_table.get(data.decode("utf-8", "replace"), ()):
                pump.wake()

    # ------------------------------------------------------------------ devices
    def _start_credentials_provider(self, resolver: Resolver) -> None:
        """The AWS IoT credentials provider, serving the template's role aliases."""
        _check_port(self.config.credentials_port, "the credentials provider")
        roles = {
            str(resolver({"Fn::GetAtt": [logical, "Arn"]})): logical
            for logical in self.template.of_type("AWS::IAM::Role")
        }
        aliases: dict[str, RoleAlias] = {}
        for logical in self.template.of_type("AWS::IoT::RoleAlias"):
            props = self.template.properties(logical)
            role_arn = str(resolver(props["RoleArn"]))
            role = roles[role_arn]
            aliases[str(resolver(props["RoleAlias"]))] = RoleAlias(
                role_arn,
                self._role_documents(resolver, role),
                duration_s=int(resolver(props.get("CredentialDurationSeconds", 3600))),
                role_max_session_s=int(
                    resolver(self.template.properties(role).get("MaxSessionDuration", 3600))
                ),
            )
        ca = Path(self.ca_file)
        self._credentials_provider = CredentialsProvider(
            self.devices,
            aliases,
            self.credentials,
            TlsFiles(ca, ca.with_name("server.pem"), ca.with_name("server.key")),
            self.device_ca.cert_file,
            region=self.config.region,
            account_id=ACCOUNT_ID,
            port=self.config.credentials_port,
        ).start()
        self.credentials_endpoint = self._credentials_provider.endpoint

    # ------------------------------------------------------------------ the web site
    def _start_site(self) -> None:
        _check_port(self.config.web_port, "the web site")
        client = data_files.code_root() / "client_sdk" / "web" / "src"
        self._site = WebSite(
            SiteConfig(
                pages=data_files.data_file("web"),
                client=client if (client / "index.js").is_file() else None,
                settings=self.page_settings,
                port=self.config.web_port,
            )
        ).start()
        self.web_url = self._site.url

    def page_settings(self) -> dict[str, Any]:
        """What a web page needs to sign in and write (the site's ``/config.json``)."""
        return {
            "apiUrl": self.api_url,
            "cognitoEndpoint": self.identity_url,
            "region": self.config.region,
            "dynamodbEndpoint": self.moto_url,
            "tables": {
                logical.removesuffix("Table").lower(): name
                for logical, name in sorted(self.tables.items())
            },
        }

    # ------------------------------------------------------------------ outputs
    def _resolve_outputs(self, resolver: Resolver) -> dict[str, str]:
        """The template's ``Outputs`` as CloudFormation reports them for a deployed stack,
        with ``ApiUrl`` the local API's URL (where the deployed one would be)."""
        outputs = {
            key: str(resolver(spec["Value"]))
            for key, spec in (self.template.body.get("Outputs") or {}).items()
        }
        if "ApiUrl" in outputs:
            outputs["ApiUrl"] = self.api_url
        return outputs

    def settings(self) -> dict[str, str]:
        """What ``.tidings/local.env`` holds."""
        values = {
            **self.aws_env(),
            "AWS_ACCESS_KEY_ID": self.developer.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.developer.secret_access_key,
            "TIDINGS_API_URL": self.api_url,
            "TIDINGS_IOT_ENDPOINT": "localhost",
            "TIDINGS_IOT_PORT": str(self.iot_port),
            "TIDINGS_CA_FILE": self.ca_file,
            "TIDINGS_STAGE": self.config.stage,
            "TIDINGS_WEB_URL": self.web_url,
            "TIDINGS_MQTT_PORT": str(self.mqtt_port),
            "TIDINGS_CREDENTIALS_ENDPOINT": self.credentials_endpoint,
            "TIDINGS_DEVICE_CA_FILE": str(self.device_ca.cert_file),
        }
        for logical, name in sorted(self.tables.items()):
            values[f"TIDINGS_TABLE_{logical.upper()}"] = name
        if self.dead_letter_queue_url:
            values["TIDINGS_DLQ_URL"] = self.dead_letter_queue_url
        return values

    def _write_env_file(self) -> None:
        """Readable and writable by its owner only: it holds the developer's secret key."""
        lines = [f"export {k}={_quote(v)}" for k, v in self.settings().items()]
        # a session token or profile left in the shell would be sent with the local key
        lines.append("unset AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_PROFILE")
        fd = os.open(self.config.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)  # a file left by an older stack keeps its mode
            out.write("\n".join(lines) + "\n")

    def find_credential(self, access_key_id: str) -> StoredCredential | None:
        """Look up a credential the stack issued (tests, diagnostics)."""
        return self.credentials.get(access_key_id)


class _MotoProcess:
    """moto in its own process (``infra.local.motohost.process``)."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.frozen_objects: int | None = None
        """Objects in moto's permanent generation, as it last answered :meth:`freeze_heap`."""
        self._answers: queue.Queue[int] = queue.Queue()
        self._pushed = 0
        self._acks: dict[int, str | None] = {}
        self._push_lock = threading.Lock()
        self._acked = threading.Condition()
        threading.Thread(target=self._read_output, daemon=True, name="moto-output").start()

    def _read_output(self) -> None:
        """Read moto's output after ``READY`` (so that the pipe never fills up)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("FROZEN "):
                self._answers.put(int(line.split()[1]))
            elif line.startswith(("ACK ", "NACK ")):
                word, number, *why = line.rstrip("\n").split(" ", 2)
                with self._acked:
                    self._acks[int(number)] = None if word == "ACK" else " ".join(why)
                    self._acked.notify_all()
            elif line.strip():
                log.debug("moto: %s", line.rstrip())
        with self._acked:
            self._acked.notify_all()  # moto is gone: nobody waits for an answer any more

    def push(self, change: Mapping[str, Any], timeout_s: float = 10.0) -> None:
        """Send one credential change over moto's stdin and wait until it is in effect."""
        assert self.process.stdin is not None
        with self._push_lock:
            self._pushed += 1
            number = self._pushed
            try:
                self.process.stdin.write(json.dumps(change) + "\n")
                self.process.stdin.flush()
            except (OSError, ValueError) as exc:
                raise OSError(f"moto does not take credentials any more: {exc}") from None
        deadline = time.monotonic() + timeout_s
        with self._acked:
            while number not in self._acks:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise OSError(f"moto did not take a credential change in {timeout_s:.0f} s")
                self._acked.wait(left)
            why = self._acks.pop(number)
        if why is not None:
            raise ValueError(f"moto refused a credential change: {why}")

    def freeze_heap(self, timeout_s: float = 30.0) -> int:
        """Have moto freeze its heap (it does once: later calls change nothing) and wait for
        its answer; returns the number of objects in moto's permanent generation."""
        self.process.send_signal(signal.SIGUSR1)
        try:
            self.frozen_objects = self._answers.get(timeout=timeout_s)
        except queue.Empty:
            raise OSError(f"moto did not answer a freeze request in {timeout_s:.0f} s") from None
        return self.frozen_objects

    def stop(self) -> None:
        if self.process.poll() is None:
            with self._push_lock:
                if self.process.stdin is not None:
                    with contextlib.suppress(OSError):
                        self.process.stdin.close()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


_process_heap_frozen = False


def freeze_process_heap() -> None:
    """For a process that owns the stack (``tidings up``), once, after :meth:`LocalStack.start`.

    Moves what start-up built (botocore's service models, the template, the CA, ...) out of
    the cyclic collector's full passes, which otherwise walk it all and stall the gateway and
    the pumps: a full pass over it took 90-240 ms in the end-to-end benchmark's process.
    Garbage is collected first; what is created later is collected as usual. ``start`` does
    not do it: a process that only uses a stack (tests, a notebook, the demo) keeps its heap
    as it is. Later calls do nothing.
    """
    global _process_heap_frozen
    if not _process_heap_frozen:
        gc.collect()
        gc.freeze()
        _process_heap_frozen = True


def _start_moto_process(
    port: int, notify_port: int, region: str, account_id: str, *, device_ca_dir: Path
) -> _MotoProcess:
    """moto with IAM enforced (``--iam``); credentials go over its stdin, a private pipe.
    Its IoT ``CreateKeysAndCertificate`` signs with the device CA kept in ``device_ca_dir``."""
    from infra.local.motohost.fixes.iot_device_ca import DEVICE_CA_DIR_ENV

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.local.motohost.process",
            str(port),
            str(notify_port),
            "--iam",
            region,
            account_id,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            DEVICE_CA_DIR_ENV: str(device_ca_dir.resolve()),
        },
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("READY "):
        process.kill()
        process.wait(timeout=5)
        raise OSError(f"moto did not start on 127.0.0.1:{port}: {line or 'no answer'}")
    return _MotoProcess(process, int(line.split()[1]))


def _developer_credential() -> StoredCredential:
    """A new long-term key pair (``AKIA…``, no session token) for the developer: an IAM
    user with AdministratorAccess."""
    import secrets
    import string

    alphabet = string.ascii_uppercase + "234567"
    return StoredCredential(
        access_key_id="AKIA" + "".join(secrets.choice(alphabet) for _ in range(16)),
        secret_access_key=secrets.token_urlsafe(30)[:40],
        principal=DEVELOPER_ARN,
        policy_sets=((ADMINISTRATOR_ACCESS,),),
        arn=DEVELOPER_ARN,
    )


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _check_port(port: int, what: str) -> None:
    if port == 0:
        return
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"port {port} on 127.0.0.1 ({what}) is already in use; "
                "stop what holds it or pass another --port",
            ) from None
