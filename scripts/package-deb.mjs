/**
 * `npm run package:deb`: the Debian package, built with dpkg-deb (the distribution's own tool)
 * from the self-contained program (scripts/sea.mjs, run here) and the files of the checkout.
 * `node scripts/package-deb.mjs [--out DIR]` (default build/) writes
 * DIR/zfs-dynamic-creator_<version>_<arch>.deb and prints its path. The man page comes from
 * `npm run build` (the npm script runs it first).
 *
 *   /usr/bin/zfs-dynamic-creator                      the program, with its own Node runtime
 *   /usr/share/man/man1/zfs-dynamic-creator.1.gz
 *   /lib/systemd/system/zfs-dynamic-creator*          the units, not enabled on install
 *   /usr/share/bash-completion/completions/zfs-dynamic-creator
 *   /usr/share/doc/zfs-dynamic-creator/               README, docs, copyright, changelog, and
 *     examples/                                       the incron file and a config: nothing
 *                                                     under /etc, so an install converts nothing
 * The maintainer scripts only tell systemd to re-read its units: a running daemon is never
 * stopped or restarted by an install, an upgrade or a removal (it keeps running the old program
 * until the administrator restarts it, between conversions). /etc/zfs-dynamic-creator and the
 * stateDir are the administrator's: the package ships nothing there and removes nothing there,
 * not even on purge (the stateDir holds the journal of interrupted jobs).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, relative, resolve } from 'node:path';
import process from 'node:process';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';

const project = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { out: { type: 'string' } } });
const out = resolve(values.out ?? join(project, 'build'));
const fail = (message) => {
  process.stderr.write(`package-deb: ${message}\n`);
  process.exit(1);
};
const tool = (file, args, options = {}) => {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options }).trim();
  } catch (error) {
    fail(
      error.code === 'ENOENT'
        ? `${file} is not installed (Debian: apt install dpkg-dev)`
        : `${file} ${args.join(' ')}: ${String(error.stderr || error.message)
            .trim()
            .split('\n')
            .at(-1)}`,
    );
  }
};

const NAME = 'zfs-dynamic-creator';
const manifest = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8'));
const version = manifest.version;
const man = join(project, manifest.man[0]);
if (!existsSync(man)) fail(`no man page at ${relative(project, man)}: run npm run build first`);
const arch = tool('dpkg', ['--print-architecture']);
const maintainer = process.env.DEBEMAIL
  ? `${process.env.DEBFULLNAME ?? NAME} <${process.env.DEBEMAIL}>`
  : 'zfs-dynamic-creator maintainers <maintainers@zfs-dynamic-creator.org>';
// The changelog's date: the commit's, so the same checkout makes the same package.
const epoch = Number(process.env.SOURCE_DATE_EPOCH || tool('git', ['-C', project, 'log', '-1', '--format=%ct']));

// 1. The program.
const sea = join(out, 'sea');
try {
  execFileSync(process.execPath, [join(project, 'scripts', 'sea.mjs'), '--out', sea], { stdio: ['ignore', 'ignore', 'inherit'] });
} catch {
  fail('the program was not built (scripts/sea.mjs said why, above)');
}

// 2. The tree.
const root = join(out, `${NAME}_${version}_${arch}`);
rmSync(root, { recursive: true, force: true });
const doc = `/usr/share/doc/${NAME}`;
const put = (path, content, mode = 0o644) => {
  const file = join(root, path);
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  writeFileSync(file, content);
  chmodSync(file, mode);
};
const gz = (text) => gzipSync(text, { level: 9 });
const from = (path) => readFileSync(join(project, path));

put(`/usr/bin/${NAME}`, readFileSync(join(sea, NAME)), 0o755);
put(`/usr/share/man/man1/${NAME}.1.gz`, gz(readFileSync(man)));
for (const unit of readdirSync(join(project, 'contrib', 'systemd')).sort()) {
  // Documentation= names the README where this package puts it.
  const text = readFileSync(join(project, 'contrib', 'systemd', unit), 'utf8').replace(
    /^Documentation=file:\/\/\/\S+\/README\.md$/m,
    `Documentation=file://${doc}/README.md`,
  );
  put(`/lib/systemd/system/${unit}`, text);
}
put(`/usr/share/bash-completion/completions/${NAME}`, from('contrib/bash-completion/zfs-dynamic-creator'));
put(`${doc}/README.md`, from('README.md'));
for (const file of readdirSync(join(project, 'docs')).filter((f) => f.endsWith('.md'))) put(`${doc}/docs/${file}`, from(`docs/${file}`));
put(`${doc}/examples/incron.d/${NAME}`, from('contrib/incron.d/zfs-dynamic-creator'));
put(`${doc}/examples/config.yaml`, from('contrib/examples/config.yaml'));
for (const dir of ['grafana', 'prometheus']) {
  for (const file of existsSync(join(project, 'contrib', dir)) ? readdirSync(join(project, 'contrib', dir)) : [])
    put(`${doc}/examples/${dir}/${file}`, from(`contrib/${dir}/${file}`));
}
put(`${doc}/copyright`, copyright());
put(
  `${doc}/changelog.gz`,
  gz(
    `${NAME} (${version}) unstable; urgency=medium\n\n  * Release ${version}. The project's history is its git log.\n\n -- ${maintainer}  ${new Date(epoch * 1000).toUTCString().replace(/GMT$/, '+0000')}\n`,
  ),
);
put(`/usr/share/lintian/overrides/${NAME}`, from('contrib/debian/lintian-overrides'));

// 3. The control files.
const files = [];
const walk = (dir) => {
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path);
    else files.push(path);
  }
};
walk(root);
const installedKb = Math.ceil(files.reduce((sum, f) => sum + statSync(f).size, 0) / 1024);
put('/DEBIAN/md5sums', files.map((f) => `${createHash('md5').update(readFileSync(f)).digest('hex')}  ${relative(root, f)}\n`).join(''));
put(
  '/DEBIAN/control',
  [
    `Package: ${NAME}`,
    `Version: ${version}`,
    `Architecture: ${arch}`,
    `Maintainer: ${maintainer}`,
    `Installed-Size: ${installedKb}`,
    `Depends: ${libraryDepends()}, rsync, util-linux (>= 2.34), zfsutils-linux | zfs-fuse`,
    'Recommends: nfs-kernel-server',
    'Suggests: incron, prometheus-node-exporter',
    'Section: admin',
    'Priority: optional',
    `Homepage: ${manifest.homepage ?? 'https://github.com/zfs-dynamic-creator/zfs-dynamic-creator'}`,
    'Description: turn new directories under a watched root into ZFS filesystems',
    ' When a directory appears under a watched root (a ZFS mountpoint), it',
    ' creates a dataset of that name, copies the contents in, swaps it into',
    ' place, verifies, removes the original and exports it over NFS. Nothing',
    ' is deleted before it is verified to be in the new dataset, and an',
    ' interrupted job is finished or undone.',
    ' .',
    ' The program carries its own Node.js runtime. The systemd units are installed',
    ' but not enabled, and no configuration is installed under /etc.',
    '',
  ].join('\n'),
);
put('/DEBIAN/postinst', from('contrib/debian/postinst'), 0o755);
put('/DEBIAN/postrm', from('contrib/debian/postrm'), 0o755);

const deb = join(out, `${NAME}_${version}_${arch}.deb`);
// xz at its fastest level: 25 MB, against 24 MB at its default, in a fraction of the time.
tool('dpkg-deb', ['--root-owner-group', '-Zxz', '-z1', '--build', root, deb]);
rmSync(root, { recursive: true, force: true });
process.stdout.write(`${deb}\n`);

/** The shared libraries the Node binary links, as dpkg-shlibdeps (dpkg-dev) words them. */
function libraryDepends() {
  const tmp = join(out, 'shlibdeps');
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'debian'), { recursive: true });
  writeFileSync(join(tmp, 'debian', 'control'), `Source: ${NAME}\n\nPackage: ${NAME}\nArchitecture: any\n`);
  copyFileSync(join(sea, NAME), join(tmp, NAME));
  const line = tool('dpkg-shlibdeps', ['-O', join(tmp, NAME)], { cwd: tmp });
  rmSync(tmp, { recursive: true, force: true });
  return /^shlibs:Depends=(.*)$/m.exec(line)?.[1] ?? fail(`dpkg-shlibdeps said nothing usable: ${line}`);
}

/** debian/copyright (machine-readable): the program, the Node runtime, the npm packages bundled in. */
function copyright() {
  const bundled = JSON.parse(readFileSync(join(sea, 'bundled.json'), 'utf8'));
  const stanza = (files, who, license) => `Files: ${files}\nCopyright: ${who}\nLicense: ${license}\n`;
  return [
    `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: ${NAME}\n`,
    stanza('*', `Copyright ${new Date(epoch * 1000).getUTCFullYear()} the ${NAME} authors`, 'GPL-3+'),
    stanza(
      `usr/bin/${NAME}`,
      'Copyright Node.js contributors and the authors of the libraries it bundles (the runtime the program carries)',
      'Expat',
    ),
    ...bundled.map(
      (p) =>
        `${stanza(`usr/bin/${NAME}`, `Copyright the authors of the npm package ${p.name} ${p.version}`, p.license === 'MIT' ? 'Expat' : p.license)}Comment: bundled into the program\n`,
    ),
    'License: GPL-3+\n This program is free software: you can redistribute it and/or modify it under the terms of\n the GNU General Public License as published by the Free Software Foundation, either version 3\n of the License, or (at your option) any later version.\n .\n On Debian systems, the full text of the GNU General Public License version 3 can be found in\n /usr/share/common-licenses/GPL-3.\n',
    'License: Expat\n Permission is hereby granted, free of charge, to any person obtaining a copy of this software\n and associated documentation files (the "Software"), to deal in the Software without\n restriction, including without limitation the rights to use, copy, modify, merge, publish,\n distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the\n Software is furnished to do so, subject to the following conditions:\n .\n The above copyright notice and this permission notice shall be included in all copies or\n substantial portions of the Software.\n .\n THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.\n',
    'License: Apache-2.0\n On Debian systems, the full text of the Apache License version 2.0 can be found in\n /usr/share/common-licenses/Apache-2.0.\n',
  ].join('\n');
}
