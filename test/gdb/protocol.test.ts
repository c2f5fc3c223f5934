// The protocol core against a fake target: framing, escapes, acks, no-ack mode, and each command
// gdb uses, answered as the GDB remote protocol specifies.

import { describe, expect, it } from "vitest";
import { fromHex, leHex, parseLeHex } from "../../lib/gdb/hex.js";
import { checksum, escapeBinary, framePacket, PacketReader, unescapeBinary } from "../../lib/gdb/packet.js";
import {
  AMD64_REGISTERS,
  decodeRegisters,
  encodeRegisters,
  REGISTER_INDEX,
} from "../../lib/gdb/registers.js";
import { GdbSession, stopReply } from "../../lib/gdb/session.js";
import { targetXml } from "../../lib/gdb/target-xml.js";
import { FakeTarget } from "./fake-target.js";

/** `$payload#cs` as gdb sends it: the payload already escaped where it is binary (X). */
function rawFrame(payload: string | Uint8Array): Uint8Array {
  const body = typeof payload === "string" ? Buffer.from(payload, "latin1") : Buffer.from(payload);
  return Buffer.concat([Buffer.from("$"), body, Buffer.from(`#${checksum(body)}`)]);
}

/** A session over a fake target; `ask` sends one packet and returns the payloads that came back. */
function connect() {
  const target = new FakeTarget();
  const wire: string[] = [];
  const session = new GdbSession(target, (b) => wire.push(Buffer.from(b).toString("latin1")));
  target.notify = (ev) => session.stopped(ev);
  const replies = () => {
    const all = wire.splice(0).join("");
    const out: string[] = [];
    for (const item of new PacketReader().push(Buffer.from(all, "latin1"))) {
      if (item.kind === "packet") out.push(Buffer.from(item.payload).toString("latin1"));
    }
    return { raw: all, packets: out };
  };
  const ask = async (payload: string | Uint8Array): Promise<string> => {
    session.receive(rawFrame(payload));
    await session.idle();
    await new Promise((r) => setImmediate(r));
    const { packets } = replies();
    expect(packets.length).toBeLessThanOrEqual(1);
    return packets[0] ?? "<none>";
  };
  return { target, session, ask, replies, wire };
}

describe("packet framing", () => {
  it("frames with the modulo-256 checksum and escapes reserved bytes", () => {
    expect(Buffer.from(framePacket("OK")).toString()).toBe("$OK#9a");
    expect(checksum(Buffer.from("qSupported"))).toBe("37");
    const esc = escapeBinary(Uint8Array.from([0x23, 0x24, 0x7d, 0x2a, 0x41]));
    expect([...esc]).toEqual([0x7d, 0x03, 0x7d, 0x04, 0x7d, 0x5d, 0x7d, 0x0a, 0x41]);
    expect([...unescapeBinary(esc)]).toEqual([0x23, 0x24, 0x7d, 0x2a, 0x41]);
  });

  it("reads packets, acks and Ctrl-C from a stream split anywhere, and flags bad checksums", () => {
    const r = new PacketReader();
    const stream = Buffer.from("+$g#67\x03-$m0,4#00junk$?#3f", "latin1");
    const items = [...stream].flatMap((b) => r.push(Uint8Array.of(b)));
    expect(items.map((i) => i.kind)).toEqual([
      "ack",
      "packet",
      "interrupt",
      "nack",
      "bad-checksum",
      "packet",
    ]);
    const p = items[1];
    expect(p?.kind === "packet" && Buffer.from(p.payload).toString()).toBe("g");
  });
});

describe("registers and target.xml", () => {
  it("encodes g as little-endian hex in regnum order with unavailable registers as xx", () => {
    const g = encodeRegisters(
      new Map([
        ["rax", 0x1122334455667788n],
        ["rip", 0x1000n],
        ["eflags", 0x202n],
      ]),
    );
    expect(g.startsWith("8877665544332211")).toBe(true);
    const ripAt = AMD64_REGISTERS.slice(0, REGISTER_INDEX.get("rip")!).reduce((n, r) => n + r.bits / 4, 0);
    expect(g.slice(ripAt, ripAt + 16)).toBe("0010000000000000");
    expect(g.slice(ripAt + 16, ripAt + 24)).toBe("02020000");
    expect(g.slice(16, 32)).toBe("x".repeat(16));
    const back = decodeRegisters(g)!;
    expect(back.get("rax")).toBe(0x1122334455667788n);
    expect(back.has("rbx")).toBe(false);
    expect(decodeRegisters("123")).toBeUndefined();
    expect(leHex(-1n, 32)).toBe("ffffffff");
    expect(parseLeHex("0100")).toBe(1n);
    expect(fromHex("zz")).toBeUndefined();
  });

  it("describes every register of the g layout in target.xml, in order, with the system registers", () => {
    const xml = targetXml();
    expect(xml).toContain("<architecture>i386:x86-64</architecture>");
    for (const f of ["core", "sse", "segments", "sys"]) expect(xml).toContain(`org.gnu.gdb.i386.${f}`);
    const names = [...xml.matchAll(/<reg name="([^"]+)" bitsize="(\d+)"[^>]*regnum="(\d+)"/g)];
    expect(names.map((m) => m[1])).toEqual(AMD64_REGISTERS.map((r) => r.name));
    expect(names.map((m) => Number(m[3]))).toEqual(AMD64_REGISTERS.map((_, i) => i));
    for (const r of ["fs_base", "gs_base", "cr0", "cr2", "cr3", "cr4", "efer"])
      expect(xml).toContain(`"${r}"`);
  });
});

describe("the session", () => {
  it("acks packets until QStartNoAckMode, then sends none", async () => {
    const c = connect();
    c.session.receive(framePacket("qSupported:multiprocess+;swbreak+"));
    await c.session.idle();
    const first = c.replies();
    expect(first.raw.startsWith("+$")).toBe(true);
    expect(first.packets[0]).toContain("PacketSize=4000");
    expect(first.packets[0]).toContain("qXfer:features:read+");
    expect(first.packets[0]).toContain("QStartNoAckMode+");
    c.session.receive(Buffer.from("+"));
    expect(await c.ask("QStartNoAckMode")).toBe("OK");
    c.session.receive(framePacket("qAttached"));
    await c.session.idle();
    expect(c.replies().raw).toBe(Buffer.from(framePacket("1")).toString());
  });

  it("answers a bad checksum with '-' and resends the last packet on '-'", async () => {
    const c = connect();
    c.session.receive(Buffer.from("$g#00"));
    expect(c.replies().raw).toBe("-");
    await c.ask("qC");
    c.session.receive(Buffer.from("-"));
    expect(c.replies().packets).toEqual(["QC1"]);
  });

  it("reads and writes registers with g/G and p/P", async () => {
    const c = connect();
    const g = await c.ask("g");
    expect(g.slice(0, 16)).toBe("8877665544332211");
    expect(await c.ask(`p${REGISTER_INDEX.get("rip")!.toString(16)}`)).toBe("0010000000000000");
    expect(await c.ask(`p${REGISTER_INDEX.get("cr0")!.toString(16)}`)).toBe("1100008000000000");
    expect(await c.ask(`P${REGISTER_INDEX.get("rip")!.toString(16)}=0020000000000000`)).toBe("OK");
    expect(c.target.regs.get("rip")).toBe(0x2000n);
    const edited = `0100000000000000${g.slice(16)}`;
    expect(await c.ask(`G${edited}`)).toBe("OK");
    expect(c.target.regs.get("rax")).toBe(1n);
    expect(await c.ask("P0=12")).toBe("E16");
    expect(await c.ask("p999")).toBe("E16");
  });

  it("reads memory with m, writes with M and binary X (escaped bytes), and reports faults", async () => {
    const c = connect();
    expect(await c.ask("M100,4:deadbeef")).toBe("OK");
    expect(await c.ask("m100,4")).toBe("deadbeef");
    const bin = Uint8Array.from([0x58, 0x23, 0x24, 0x7d, 0x2a]);
    const payload = Buffer.concat([Buffer.from("X200,5:"), escapeBinary(bin)]);
    expect(await c.ask(payload)).toBe("OK");
    expect([...c.target.memory.subarray(0x200, 0x205)]).toEqual([...bin]);
    expect(await c.ask("X200,0:")).toBe("OK");
    expect(await c.ask("mfffff0,4")).toBe("E0e");
    expect(await c.ask("M100,4:dead")).toBe("E16");
  });

  it("continues and steps (c, s, vCont) and sends the stop reply when the target stops", async () => {
    const c = connect();
    expect(await c.ask("vCont?")).toBe("vCont;c;C;s;S");
    expect(await c.ask("c")).toBe("T05thread:1;");
    expect(await c.ask("s")).toBe("T05thread:1;");
    expect(await c.ask("vCont;s:1;c")).toBe("T05thread:1;");
    expect(await c.ask("vCont;c:-1")).toBe("T05thread:1;");
    expect(c.target.log).toEqual(["continue", "step", "step", "continue"]);
    expect(await c.ask("c3000")).toBe("T05thread:1;");
    expect(c.target.regs.get("rip")).toBe(0x3000n);
  });

  it("interrupts a running target on 0x03 with a SIGINT stop reply", async () => {
    const c = connect();
    c.target.nextStop = undefined;
    expect(await c.ask("c")).toBe("<none>");
    expect(c.session.running).toBe(true);
    c.session.receive(Uint8Array.of(0x03));
    await new Promise((r) => setImmediate(r));
    expect(c.replies().packets).toEqual(["T02thread:1;"]);
    expect(c.target.log).toEqual(["continue", "interrupt"]);
  });

  it("inserts and removes breakpoints and watchpoints; an unsupported kind answers empty", async () => {
    const c = connect();
    expect(await c.ask("Z0,1000,1")).toBe("OK");
    expect(await c.ask("Z2,2000,4")).toBe("OK");
    expect(await c.ask("Z3,2000,4")).toBe("");
    expect(c.target.breakpoints).toEqual(["0:1000:1", "2:2000:4"]);
    expect(await c.ask("z0,1000,1")).toBe("OK");
    expect(c.target.breakpoints).toEqual(["2:2000:4"]);
    expect(await c.ask("Z9,0,1")).toBe("E16");
  });

  it("reports threads, attachment and target.xml in chunks", async () => {
    const c = connect();
    expect(await c.ask("qfThreadInfo")).toBe("m1");
    expect(await c.ask("qsThreadInfo")).toBe("l");
    expect(await c.ask("qC")).toBe("QC1");
    expect(await c.ask("Hg1")).toBe("OK");
    expect(await c.ask("qAttached")).toBe("1");
    expect(await c.ask("?")).toBe("T05thread:1;");
    const xml = targetXml();
    let got = "";
    for (let off = 0; ; off += 0x100) {
      const r = await c.ask(`qXfer:features:read:target.xml:${off.toString(16)},100`);
      got += r.slice(1);
      if (r[0] === "l") break;
      expect(r[0]).toBe("m");
    }
    expect(got).toBe(xml);
    expect(await c.ask("qXfer:features:read:other.xml:0,100")).toBe("E00");
    expect(await c.ask("vMustReplyEmpty")).toBe("");
  });

  it("makes each vCPU a thread: list, T, Hg for registers/memory/breakpoints, Hc and vCont for steps", async () => {
    const c = connect();
    c.target.threadCount = 3;
    expect(await c.ask("qfThreadInfo")).toBe("m1,2,3");
    expect(await c.ask("qThreadExtraInfo,3")).toBe(Buffer.from("vCPU 2").toString("hex"));
    expect(await c.ask("qThreadExtraInfo,4")).toBe("E16");
    expect(await c.ask("T3")).toBe("OK");
    expect(await c.ask("T4")).toBe("E16");
    expect(await c.ask("Hg4")).toBe("E16");
    expect(await c.ask("Hg2")).toBe("OK");
    expect(await c.ask("qC")).toBe("QC2");
    const rip = REGISTER_INDEX.get("rip")!.toString(16);
    expect(parseLeHex(await c.ask(`p${rip}`))).toBe(0x1100n);
    await c.ask("m0,4");
    await c.ask("Z0,10,1");
    // -1 and 0 (all, any) keep the choice
    expect(await c.ask("Hg-1")).toBe("OK");
    expect(await c.ask("Hg0")).toBe("OK");
    await c.ask("g");
    expect(c.target.calls).toEqual(["g1", "m1", "Z1", "g1"]);
    c.target.calls.length = 0;
    // a step acts on the thread vCont names, or Hc's; a plain continue resumes everyone
    c.target.nextStop = { kind: "signal", signal: 5, vcpu: 2 };
    expect(await c.ask("vCont;s:3;c")).toBe("T05thread:3;");
    // the thread that stopped becomes current for Hg and Hc
    expect(await c.ask("qC")).toBe("QC3");
    expect(await c.ask("s")).toBe("T05thread:3;");
    expect(await c.ask("Hc2")).toBe("OK");
    expect(await c.ask("s")).toBe("T05thread:3;");
    expect(await c.ask("vCont;s:4")).toBe("E16");
    expect(await c.ask("vCont;x")).toBe("E16");
    c.target.nextStop = { kind: "signal", signal: 5, vcpu: 0, reason: "swbreak" };
    expect(await c.ask("vCont;c")).toBe("T05thread:1;swbreak:;");
    await c.ask("g");
    expect(c.target.calls).toEqual(["s2", "s2", "s1", "c2", "g0"]);
  });

  it("passes monitor commands (qRcmd) and ends on detach and kill", async () => {
    const c = connect();
    const hex = Buffer.from("info registers").toString("hex");
    expect(Buffer.from(await c.ask(`qRcmd,${hex}`), "hex").toString()).toBe("you said info registers\n");
    expect(await c.ask("D")).toBe("OK");
    expect(c.target.log).toEqual(["detach"]);
    const k = connect();
    expect(await k.ask("k")).toBe("<none>");
    expect(k.target.log).toEqual(["kill"]);
  });

  it("formats exit and watchpoint stop replies", () => {
    expect(stopReply({ kind: "exited", code: 3 })).toBe("W03");
    expect(stopReply({ kind: "terminated", signal: 6 })).toBe("X06");
    expect(stopReply({ kind: "signal", signal: 5, watch: { type: "awatch", address: 0x2000n } })).toBe(
      "T05thread:1;awatch:2000;",
    );
    expect(stopReply({ kind: "signal", signal: 5, reason: "swbreak" })).toBe("T05thread:1;swbreak:;");
  });
});
