// push-to-talk's microphone tap, an AudioWorklet: it runs on the audio thread and hands each block of the first
// channel to the page, which builds the WAV (ScriptProcessorNode, its predecessor, is deprecated).
"use strict";

class Tap extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true;
  }
}

registerProcessor("medrobot-tap", Tap);
