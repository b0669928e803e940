'use strict';
// Message bodies (docs/protocol.md, *Body*): a DICOM data set in Explicit VR Little Endian without preamble, File
// Meta group or Pixel Data, read and written with dcmjs. dcmjs reads and writes whole Part 10 files in its public
// API; a bare data set goes through DicomMessage._read / DicomMessage.write (the functions its readFile/write use).
const { DicomMessage, DicomMetaDictionary, ReadBufferStream, WriteBufferStream } = require('dcmjs').data;

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const DROP = new Set(['7FE00008', '7FE00009', '7FE00010']);

function clean(ds) {
  const out = {};
  for (const tag of Object.keys(ds).sort()) {
    if (tag.startsWith('0002') || DROP.has(tag)) continue;
    const el = ds[tag];
    const e = { vr: el.vr };
    if (el.Value !== undefined && el.Value.length) e.Value = el.vr === 'SQ' ? el.Value.map(clean) : el.Value;
    if (el.InlineBinary !== undefined) e.InlineBinary = el.InlineBinary;
    out[tag] = e;
  }
  return out;
}

/** A body (Buffer) in the DICOM JSON model (PS3.18 F), as dcmjs reads it. */
function toJson(body) {
  if (!body || !body.length) return {};
  const ab = body.buffer.slice(body.byteOffset, body.byteOffset + body.length);
  return clean(DicomMessage._read(new ReadBufferStream(ab), EXPLICIT_LE, {}));
}

/** A body from a data set in the DICOM JSON model; File Meta and Pixel Data are left out. */
function fromJson(dataset) {
  const ds = clean(dataset);
  const out = new WriteBufferStream();
  DicomMessage.write(ds, out, EXPLICIT_LE, {});
  return Buffer.from(out.getBuffer());
}

/** A body from a naturalized data set ({Modality: "MR", SeriesInstanceUID: ...}). */
function fromNatural(natural) { return fromJson(DicomMetaDictionary.denaturalizeDataset(natural)); }

/** The naturalized form of a body ({Modality: "MR", ...}). */
function toNatural(body) { return DicomMetaDictionary.naturalizeDataset(toJson(body)); }

/** A DICOM Part 10 file (Buffer) naturalized, without its pixel data. */
function readFile(buffer) {
  const ab = buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length);
  const dict = DicomMessage.readFile(ab, { untilTag: '7FE00010', includeUntilTagValue: false });
  return DicomMetaDictionary.naturalizeDataset(dict.dict);
}

module.exports = { toJson, fromJson, fromNatural, toNatural, readFile };
