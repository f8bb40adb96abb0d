// The sample grids: a slider through every saved iteration and the chosen grid shown large. The
// newest is shown as it arrives unless the slider was moved away from it; moving it back to the
// end follows the run again.

export class Samples {
  constructor(doc) {
    this.img = doc.getElementById('sample');
    this.slider = doc.getElementById('slider');
    this.label = doc.getElementById('sample-label');
    this.note = doc.getElementById('sample-note');
    this.list = [];
    this.follow = true;
    this.slider.addEventListener('input', () => {
      const i = Number(this.slider.value);
      this.follow = i === this.list.length - 1;
      this.show(i);
    });
  }

  /** Replaces the list (a snapshot): [{iteration, file}] in iteration order. */
  reset(list) {
    this.list = list.slice();
    this.refresh();
  }

  /** One more grid ({iteration, file}); an iteration written again (a resume) replaces its entry. */
  add(sample) {
    const at = this.list.findIndex((s) => s.iteration >= sample.iteration);
    if (at === -1) this.list.push(sample);
    else if (this.list[at].iteration === sample.iteration) this.list[at] = sample;
    else this.list.splice(at, 0, sample);
    this.refresh(sample.iteration);
  }

  refresh(changed) {
    const n = this.list.length;
    this.slider.max = String(Math.max(0, n - 1));
    this.slider.disabled = n < 2;
    if (n === 0) return;
    const current = Number(this.slider.value);
    if (this.follow) this.show(n - 1);
    else if (this.list[current]?.iteration === changed) this.show(current);
    else this.show(Math.min(current, n - 1), false);
  }

  show(i, load = true) {
    const s = this.list[i];
    if (!s) return;
    this.slider.value = String(i);
    this.label.textContent = `iteration ${s.iteration}`;
    this.note.textContent = `${i + 1} of ${this.list.length}${this.follow ? ' · following the run' : ' · drag to the end to follow the run'}`;
    const src = `/samples/${encodeURIComponent(s.file)}`;
    if (load || this.img.getAttribute('src') !== src) {
      this.img.src = src;
      this.img.dataset.iteration = String(s.iteration);
    }
  }
}
