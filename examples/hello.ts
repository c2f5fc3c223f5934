// What `npm start` runs. Until the machine API lands this only reports that the project built.
console.log("nodevmm: built; the default guest arrives with the machine API.");
