// docker-compose.yml stays valid for the only validator this project's
// machines have (Debian's docker-compose 1.29, which also catches what it does
// not support: top-level `name:`/`include:`, `depends_on.required`), declares
// exactly Jota's seven services, and gives every one of them a health check.
//
// Hermetic: the child gets a minimal environment and an empty env file, so a
// developer's shell variables or ./.env cannot change the outcome.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const COMPOSE_FILE = join(REPO_ROOT, 'docker-compose.yml');
const REQUIRED_SERVICES = ['gateway', 'inference', 'postgres', 'qdrant', 'redis', 'transcription', 'worker'];

interface ComposeResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

let envDir = '';
let emptyEnvFile = '';

/** Runs docker-compose from the repository root; fails clearly when it is not installed. */
function compose(args: string[], extraEnv: Record<string, string> = { JOTA_SECRET: 'compose-test-secret' }): ComposeResult {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? REPO_ROOT, ...extraEnv };
  const result = spawnSync('docker-compose', ['--env-file', emptyEnvFile, '-f', COMPOSE_FILE, ...args], {
    cwd: REPO_ROOT,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (result.error) {
    const code = (result.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      assert.fail(
        'docker-compose is not installed: the project setup should have installed it ' +
          '(Debian package `docker-compose`, 1.29; run the setup script as root)',
      );
    }
    throw result.error;
  }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Reads `docker-compose config` output (normalised YAML: two-space indent,
 * `services:` at column 0, service names at 2, their keys at 4) into
 * service -> { top-level keys, the lines of its healthcheck block }.
 */
function scanServices(yaml: string): Map<string, { keys: Set<string>; healthcheck: string[] }> {
  const services = new Map<string, { keys: Set<string>; healthcheck: string[] }>();
  let inServices = false;
  let current: { keys: Set<string>; healthcheck: string[] } | undefined;
  let inHealthcheck = false;
  for (const line of yaml.split('\n')) {
    if (line.trim() === '') continue;
    const indent = line.length - line.trimStart().length;
    if (indent === 0) {
      inServices = line === 'services:';
      current = undefined;
      inHealthcheck = false;
      continue;
    }
    if (!inServices) continue;
    if (indent === 2) {
      const name = /^ {2}([^\s:#][^:]*):\s*$/.exec(line)?.[1];
      assert.ok(name, `unexpected line under services: ${JSON.stringify(line)}`);
      current = { keys: new Set(), healthcheck: [] };
      services.set(name, current);
      inHealthcheck = false;
      continue;
    }
    if (!current) continue;
    if (indent === 4) {
      const key = /^ {4}([^\s:#-][^:]*):/.exec(line)?.[1];
      if (key) current.keys.add(key);
      inHealthcheck = key === 'healthcheck';
      continue;
    }
    if (inHealthcheck) current.healthcheck.push(line.trim());
  }
  return services;
}

describe('docker-compose.yml', function () {
  this.timeout(60_000);

  before(function () {
    envDir = mkdtempSync(join(tmpdir(), 'jota-compose-test-'));
    emptyEnvFile = join(envDir, 'empty.env');
    writeFileSync(emptyEnvFile, '');
  });

  after(function () {
    if (envDir) rmSync(envDir, { recursive: true, force: true });
  });

  it('passes `docker-compose config -q` with no warnings', function () {
    const { status, stderr } = compose(['config', '-q']);
    assert.equal(stderr, '', `docker-compose printed on stderr:\n${stderr}`);
    assert.equal(status, 0);
  });

  it('declares exactly the seven services, each with a health check', function () {
    const listed = compose(['config', '--services']);
    assert.equal(listed.status, 0, listed.stderr);
    const names = listed.stdout.split('\n').map((s) => s.trim()).filter(Boolean).sort();
    assert.deepEqual(names, REQUIRED_SERVICES);

    const config = compose(['config']);
    assert.equal(config.status, 0, config.stderr);
    const services = scanServices(config.stdout);
    assert.deepEqual([...services.keys()].sort(), REQUIRED_SERVICES, 'service blocks found in `docker-compose config`');
    for (const [name, service] of services) {
      assert.ok(service.keys.has('healthcheck'), `service ${name} has no healthcheck`);
      assert.ok(
        service.healthcheck.some((l) => l.startsWith('test:')),
        `service ${name}: healthcheck has no test: ${JSON.stringify(service.healthcheck)}`,
      );
      assert.ok(!service.healthcheck.includes('disable: true'), `service ${name}: healthcheck is disabled`);
      assert.ok(!service.healthcheck.includes('- NONE'), `service ${name}: healthcheck test is NONE`);
    }
  });

  it('refuses to start without JOTA_SECRET, saying so', function () {
    const { status, stderr } = compose(['config', '-q'], {});
    assert.notEqual(status, 0, 'docker-compose accepted a configuration without JOTA_SECRET');
    assert.match(stderr, /JOTA_SECRET must be set/);
  });
});
