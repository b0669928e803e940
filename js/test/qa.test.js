'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { check } = require('../examples/series-qa');

const slice = (z, o = {}) => ({ PixelSpacing: [0.5, 0.5], SliceThickness: 5, ImageOrientationPatient: [1, 0, 0, 0, 1, 0], ImagePositionPatient: [0, 0, z], ...o });

test('series QA: a regular series has no findings; missing PixelSpacing, uneven slices, thickness and orientation are found', () => {
  assert.deepEqual(check([slice(0), slice(5), slice(10)]), []);
  const f = check([slice(0), slice(3), slice(10, { PixelSpacing: undefined })]);
  assert.ok(f.some((x) => x.startsWith('PixelSpacing missing on 1 of 3')));
  assert.ok(f.some((x) => x.startsWith('uneven spacing')));
  assert.ok(check([slice(0), slice(2.5), slice(5)]).some((x) => x.startsWith('SliceThickness 5 mm differs')));
  assert.ok(check([slice(0), slice(5, { ImageOrientationPatient: [0, 1, 0, 0, 0, 1] })]).includes('ImageOrientationPatient differs between instances'));
});
